"""Recipes: typed sections (sections.py) and reading them from YAML with overrides (loading.py)."""

from __future__ import annotations

from seq2seq.recipe.loading import (
    apply_overrides,
    dump_recipe,
    load_recipe,
    parse_recipe,
    parse_yaml,
    read_yaml,
)
from seq2seq.recipe.sections import (
    LOSS_METRICS,
    Component,
    Corpus,
    CoverageLoss,
    DataConfig,
    EarlyStopping,
    ModelConfig,
    Recipe,
    TeacherForcing,
    TrainConfig,
    Validation,
)

__all__ = [
    "LOSS_METRICS",
    "Component",
    "Corpus",
    "CoverageLoss",
    "DataConfig",
    "EarlyStopping",
    "ModelConfig",
    "Recipe",
    "TeacherForcing",
    "TrainConfig",
    "Validation",
    "apply_overrides",
    "dump_recipe",
    "load_recipe",
    "parse_recipe",
    "parse_yaml",
    "read_yaml",
]
