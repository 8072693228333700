"""Check plain data (parsed YAML) against type annotations and dataclass schemas."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Union

from seq2seq.errors import Problem

# Hook for `Annotated[..., marker]` fields: called with (marker, value, path), returns problems.
MarkerCheck = Callable[[Any, Any, str], list[Problem]]


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def describe(annotation: Any) -> str:
    """A short human name for a type annotation (`int`, `'a' | 'b'`, `list of str`)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Annotated:
        return describe(args[0])
    if origin in (list, tuple, Iterable, typing.Sequence):
        return f"list of {describe(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return "mapping"
    if dataclasses.is_dataclass(annotation):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(
    value: Any, annotation: Any, path: str, marker_check: MarkerCheck | None = None
) -> list[Problem]:
    """Problems with `value` as an instance of `annotation` (empty when it fits).

    Unknown or complex annotations (tensors, callables) are accepted: they are set by code,
    not by recipes.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    wrong = [Problem(path, f"expected {describe(annotation)}, got {_show(value)}")]
    if annotation is Any or annotation is dataclasses.MISSING:
        return []
    problems: list[Problem]
    if origin is typing.Annotated:
        problems = check_value(value, args[0], path, marker_check)
        if not problems and marker_check is not None:
            for marker in args[1:]:
                problems += marker_check(marker, value, path)
        return problems
    if origin in (Union, types.UnionType):
        for option in args:
            if not check_value(value, option, path, marker_check):
                return []
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1 and value is not None:
            return check_value(value, non_null[0], path, marker_check)
        return wrong
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return []
        hint = suggest(str(value), [str(a) for a in args])
        return [Problem(path, f"expected one of {describe(annotation)}, got {_show(value)}.{hint}")]
    if annotation is type(None):
        return [] if value is None else wrong
    if annotation is bool:
        return [] if isinstance(value, bool) else wrong
    if annotation is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else wrong
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else wrong
    if annotation is str:
        return [] if isinstance(value, str) else wrong
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, list):
            return wrong
        item = args[0] if args else Any
        problems = []
        for i, element in enumerate(value):
            problems += check_value(element, item, f"{path}[{i}]", marker_check)
        return problems
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return [] if isinstance(value, dict) else wrong
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, dict):
            return wrong
        return parse_dataclass(annotation, value, path, marker_check)[1]
    return []


def parse_dataclass(
    cls: type[Any], data: Mapping[str, Any], path: str, marker_check: MarkerCheck | None = None
) -> tuple[Any, list[Problem]]:
    """Build `cls` from a mapping, collecting every problem instead of stopping at the first.

    Returns (instance or None, problems). Nested dataclass fields are built recursively.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    problems: list[Problem] = []
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            hint = suggest(str(key), fields)
            accepted = ", ".join(fields)
            problems.append(
                Problem(prefix + str(key), f"unknown key.{hint}\n    accepted: {accepted}")
            )
    values: dict[str, Any] = {}
    for name, field in fields.items():
        where = prefix + name
        if name not in data:
            no_default = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if no_default:
                problems.append(Problem(where, f"missing required key ({describe(hints[name])})"))
            continue
        value = data[name]
        found = check_value(value, hints[name], where, marker_check)
        problems += found
        if not found:
            values[name] = _convert(value, hints[name], where, marker_check)
    if problems:
        return None, problems
    return cls(**values), []


def _convert(value: Any, annotation: Any, path: str, marker_check: MarkerCheck | None) -> Any:
    """Turn an already checked value into its typed form (nested dataclasses, int → float)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _convert(value, args[0], path, marker_check)
    if origin in (Union, types.UnionType):
        for option in args:
            if not check_value(value, option, path, marker_check):
                return _convert(value, option, path, marker_check)
    if annotation is float and isinstance(value, int):
        return float(value)
    if origin is list and args:
        return [_convert(v, args[0], f"{path}[{i}]", marker_check) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return parse_dataclass(annotation, value, path, marker_check)[0]
    return value
