"""What the repository ships works: every recipe validates, the README's example component runs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from seq2seq import registry
from seq2seq.assemble import build_model
from seq2seq.recipe import (
    DataConfig,
    ModelConfig,
    Recipe,
    TrainConfig,
    Validation,
    load_recipe,
)
from seq2seq.testing import check_attention

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def test_there_are_recipes() -> None:
    """The glob finds the shipped recipes (a wrong path would make the next test vacuous)."""
    assert {"demo.yaml", "ddtp-de-en.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipe_validates_and_builds(path: Path) -> None:
    """Each recipe passes validation, builds its model, and opens with the command that runs it."""
    recipe = load_recipe(path)
    _, kwargs = registry.split_spec(recipe.data.tokenizer)
    vocab = int(kwargs.get("vocab_size", 100))
    assert build_model(recipe.model, vocab, vocab)
    header = path.read_text(encoding="utf-8").split("\n")[:8]
    assert any(line.startswith("# Run: seq2seq train") for line in header)


def test_demo_data_is_bundled_and_aligned() -> None:
    """The demo recipe's data ships with the repository, line-aligned."""
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml")
    for corpus in (recipe.data.train, recipe.data.valid):
        assert corpus is not None and corpus.source and corpus.target
        src = (ROOT / corpus.source).read_text(encoding="utf-8").splitlines()
        tgt = (ROOT / corpus.target).read_text(encoding="utf-8").splitlines()
        assert len(src) == len(tgt) > 100


@pytest.mark.parametrize(
    "section", [DataConfig, ModelConfig, TrainConfig, Validation, Recipe], ids=lambda c: c.__name__
)
def test_demo_recipe_names_every_key(section: type) -> None:
    """recipes/demo.yaml is the commented reference: every recipe key is in it, set or as a
    comment, so a key added to the schema without documentation fails here."""
    text = (ROOT / "recipes" / "demo.yaml").read_text(encoding="utf-8")
    missing = [
        f.name
        for f in dataclasses.fields(section)
        if not re.search(rf"^\s*(# )?{f.name}:", text, re.M)
    ]
    assert missing == []


def test_readme_component_example(clean_registry: None) -> None:
    """The 'Write a component' code in the README registers and passes the contract checks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Write a component", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme_example"})
    check_attention("scaled_dot_demo")
