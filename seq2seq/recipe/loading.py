"""Reading recipes: safe YAML, key=value overrides, validation with every problem collected."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from seq2seq import registry
from seq2seq.errors import Problem, RecipeError
from seq2seq.recipe.sections import LOSS_METRICS, Component, Recipe, TeacherForcing
from seq2seq.schema import parse_dataclass, suggest


def _component_check(marker: Any, value: Any, path: str) -> list[Problem]:
    if isinstance(marker, Component):
        return registry.check(marker.kind, value, path)
    return []


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads `1e-4` as a float (YAML 1.2), not as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """yaml.safe_load with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely, with errors that name the file and line."""
    if not path.is_file():
        raise RecipeError(str(path), [Problem("", "file not found")])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(str(path), [Problem("", f"not UTF-8 text (byte {exc.start})")]) from exc
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(str(path), [Problem("", f"invalid YAML: {where}{reason}")]) from exc


def _is_component(parts: Sequence[str]) -> bool:
    """Whether a key path names a component spec field of the recipe schema."""
    annotation: Any = Recipe
    for part in parts:
        while typing.get_origin(annotation) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0]
        if not dataclasses.is_dataclass(annotation):
            return False
        hints = typing.get_type_hints(annotation, include_extras=True)
        if part not in hints:
            return False
        annotation = hints[part]
    while typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    extras = typing.get_args(annotation)[1:] if typing.get_origin(annotation) else ()
    return any(isinstance(extra, Component) for extra in extras)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> list[Problem]:
    """Set `a.b.c=value` overrides in place (values parsed as YAML); return problems."""
    problems = []
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(Problem(override, "an override looks like key.path=value"))
            continue
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:
            problems.append(Problem(key, f"value {text!r} is not valid YAML"))
            continue
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and _is_component(parts[: i + 1]):
                child = node[part] = {"type": child}  # a bare component name gets arguments
            elif child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                problems.append(Problem(key, f"{where} is {child!r}, not a section"))
                break
            node = child
        else:
            node[parts[-1]] = value
    return problems


def _cross_checks(recipe: Recipe) -> list[Problem]:
    """Rules that involve more than one key."""
    problems = []
    select = recipe.train.validation.select
    metric_names = [registry.split_spec(m)[0] for m in recipe.metrics]
    if select not in LOSS_METRICS and select not in metric_names:
        known = [*LOSS_METRICS, *metric_names]
        problems.append(
            Problem(
                "train.validation.select",
                f"'{select}' is neither loss, ppl nor a metric listed in `metrics`."
                f"{suggest(select, known)} Known: {', '.join(known)}",
            )
        )
    no_validation = recipe.data.valid is None or recipe.train.validation.every <= 0
    if recipe.train.early_stopping is not None and no_validation:
        problems.append(
            Problem("train.early_stopping", "needs data.valid and train.validation.every > 0")
        )
    if recipe.model.share_embeddings and not recipe.data.joint_vocab:
        problems.append(
            Problem("model.share_embeddings", "needs data.joint_vocab: true (one vocabulary)")
        )
    for path, corpus in (("data.train", recipe.data.train), ("data.valid", recipe.data.valid)):
        if corpus is None:
            continue
        files = corpus.source is not None or corpus.target is not None
        given = sum([files, corpus.tsv is not None, corpus.dataset is not None])
        if given > 1:
            problems.append(
                Problem(path, "give one of: source/target files, a tsv file, or a dataset")
            )
        elif given == 1 and files and (corpus.source is None or corpus.target is None):
            problems.append(Problem(path, "give both `source` and `target` files"))
        elif given == 0:
            problems.append(
                Problem(path, "give `source` and `target` files, a `tsv` file, or a `dataset`")
            )
    positive = {
        "data.max_length": recipe.data.max_length,
        "model.embedding_dim": recipe.model.embedding_dim,
        "train.batch_tokens": recipe.train.batch_tokens,
        "train.max_epochs": recipe.train.max_epochs,
        "train.lr": recipe.train.lr,
        "train.accumulate": recipe.train.accumulate,
        "train.dist_timeout": recipe.train.dist_timeout,
        "data.shuffle_buffer": recipe.data.shuffle_buffer,
        "data.fit_pairs": recipe.data.fit_pairs,
        "data.num_proc": recipe.data.num_proc or 1,
        "model.init_scale": 1.0 if recipe.model.init_scale is None else recipe.model.init_scale,
    }
    problems += [Problem(k, f"must be positive, got {v}") for k, v in positive.items() if v <= 0]
    forcing = recipe.train.teacher_forcing
    bounds = [forcing] if isinstance(forcing, float) else [forcing.start, forcing.end]
    if not all(0.0 <= b <= 1.0 for b in bounds):
        problems.append(Problem("train.teacher_forcing", "ratios must be between 0 and 1"))
    if isinstance(forcing, TeacherForcing):
        low, high = {"exponential": (0.0, 1.0), "inverse_sigmoid": (1.0, math.inf)}.get(
            forcing.schedule, (0.0, math.inf)
        )
        if not low <= forcing.k <= high:
            problems.append(
                Problem(
                    "train.teacher_forcing.k",
                    f"for {forcing.schedule} k must be in [{low}, {high}], got {forcing.k}",
                )
            )
    if recipe.data.streaming and recipe.data.cache_dir is not None:
        problems.append(
            Problem("data.cache_dir", "streaming reads the data as it goes; remove one of the two")
        )
    if recipe.model.copy and not recipe.data.joint_vocab:
        problems.append(Problem("model.copy", "copying needs data.joint_vocab: true"))
    problems += _build_problems(
        {"search": recipe.search, "train.validation.search": recipe.train.validation.search}
    )
    return problems


def _build_problems(searches: dict[str, Any]) -> list[Problem]:
    """Searches are cheap to build, and building catches values their arguments reject."""
    problems = []
    for where, spec in searches.items():
        try:
            registry.build("search", spec, where=where)
        except RecipeError as exc:
            problems += exc.problems
    return problems


def parse_recipe(data: Any, source: str = "the recipe") -> Recipe:
    """Validate plain data into a Recipe, raising one RecipeError listing every problem."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise RecipeError(source, [Problem("", f"a recipe is a YAML mapping, this is {kind}")])
    not_text = _lone_surrogates(data, "")
    if not_text:
        raise RecipeError(source, not_text)
    registry.load_builtins()
    recipe, problems = parse_dataclass(Recipe, data, "", _component_check)
    if recipe is not None:
        problems = _cross_checks(recipe)
    if problems:
        raise RecipeError(source, problems)
    return recipe  # type: ignore[no-any-return]


def _lone_surrogates(data: Any, path: str) -> list[Problem]:
    """Strings that are not text: YAML's `"\\ud800"` escape makes a lone surrogate, which no
    UTF-8 file can hold, and every recipe is written into its run dir."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(data[exc.start])
            return [Problem(path, f"not valid Unicode: a lone surrogate (U+{code:04X})")]
        return []
    if isinstance(data, Mapping):
        found = []
        for key, value in data.items():
            where = f"{path}.{key!s}" if path else str(key)
            found += _lone_surrogates(key, where) + _lone_surrogates(value, where)
        return found
    if isinstance(data, list):
        return [p for i, item in enumerate(data) for p in _lone_surrogates(item, f"{path}[{i}]")]
    return []


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict):
        problems = apply_overrides(data, overrides)
        if problems:
            raise RecipeError(str(path), problems)
    return parse_recipe(data, str(path))


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True)
