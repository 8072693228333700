"""Tests for seq2seq.schema: value checks against annotations, dataclass parsing, suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional

import pytest

from seq2seq.errors import Problem
from seq2seq.schema import check_value, describe, parse_dataclass, suggest


@dataclass
class Inner:
    """A nested section."""

    size: int
    label: str = "x"


@dataclass
class Outer:
    """A section holding another one."""

    inner: Inner
    rate: float = 0.5
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


# ---------------------------------------------------------------- scalars


@pytest.mark.parametrize("value", [0, 3, -7, 10**12])
def test_int_accepts_ints(value: int) -> None:
    assert check_value(value, int, "k") == []


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "True"), (3.0, "3.0"), ("3", "'3'"), (None, "None"), ([3], "[3]")]
)
def test_int_rejects_bool_float_str_none_list(value: Any, shown: str) -> None:
    assert messages(check_value(value, int, "a.b")) == [f"a.b: expected int, got {shown}"]


@pytest.mark.parametrize("value", [0, 1, 2.5, -0.1])
def test_float_accepts_ints_and_floats(value: float) -> None:
    assert check_value(value, float, "lr") == []


@pytest.mark.parametrize("value", [True, False, "0.1", None])
def test_float_rejects_bool_str_none(value: Any) -> None:
    assert messages(check_value(value, float, "lr")) == [f"lr: expected float, got {value!r}"]


def test_bool_accepts_only_bools() -> None:
    assert check_value(True, bool, "f") == []
    assert check_value(False, bool, "f") == []
    assert messages(check_value(1, bool, "f")) == ["f: expected bool, got 1"]
    assert messages(check_value("yes", bool, "f")) == ["f: expected bool, got 'yes'"]


def test_str_accepts_only_strings() -> None:
    assert check_value("", str, "s") == []
    assert messages(check_value(5, str, "s")) == ["s: expected str, got 5"]


def test_none_type_accepts_only_none() -> None:
    assert check_value(None, type(None), "n") == []
    assert messages(check_value(0, type(None), "n")) == ["n: expected null, got 0"]


def test_long_values_are_shortened_in_messages() -> None:
    [problem] = check_value("x" * 200, int, "k")
    assert problem.message.endswith("...")
    assert len(problem.message) < 100


def test_any_accepts_everything() -> None:
    assert check_value(object(), Any, "k") == []


# ---------------------------------------------------------------- Literal / unions


def test_literal_accepts_members_and_suggests_close_one() -> None:
    annotation = Literal["tanh", "relu"]
    assert check_value("relu", annotation, "act") == []
    assert messages(check_value("tanhh", annotation, "act")) == [
        "act: expected one of 'tanh' | 'relu', got 'tanhh'. Did you mean 'tanh'?"
    ]


def test_literal_without_close_member_gives_no_suggestion() -> None:
    [problem] = check_value("sigmoid", Literal["tanh", "relu"], "act")
    assert problem.message == "expected one of 'tanh' | 'relu', got 'sigmoid'."


def test_literal_of_ints_rejects_bool_and_float() -> None:
    assert check_value(True, Literal[1, 2], "n") != []
    assert check_value(1.0, Literal[1, 2], "n") != []


def test_optional_accepts_none_and_inner_type() -> None:
    assert check_value(None, Optional[int], "k") == []  # noqa: UP045 - the typing spelling too
    assert check_value(None, int | None, "k") == []
    assert check_value(4, int | None, "k") == []


def test_optional_reports_the_inner_type_error() -> None:
    # The single non-null option's own message is clearer than "int or null".
    assert messages(check_value("x", int | None, "k")) == ["k: expected int, got 'x'"]
    [problem] = check_value("fastt", Literal["fast", "slow"] | None, "m")
    assert "Did you mean 'fast'?" in problem.message


def test_union_of_several_types() -> None:
    annotation = int | str
    assert check_value(3, annotation, "u") == []
    assert check_value("a", annotation, "u") == []
    assert messages(check_value(2.5, annotation, "u")) == ["u: expected int or str, got 2.5"]


def test_annotated_runs_marker_check_only_when_base_type_fits() -> None:
    calls: list[tuple[Any, Any, str]] = []

    def marker_check(marker: Any, value: Any, path: str) -> list[Problem]:
        calls.append((marker, value, path))
        return [Problem(path, "marker says no")]

    annotation = Annotated[int, "M"]
    assert messages(check_value(3, annotation, "p", marker_check)) == ["p: marker says no"]
    assert calls == [("M", 3, "p")]
    assert messages(check_value("x", annotation, "p", marker_check)) == ["p: expected int, got 'x'"]
    assert len(calls) == 1
    assert check_value(3, annotation, "p") == []  # without a hook only the type matters


# ---------------------------------------------------------------- containers


def test_list_checks_each_element_with_its_index() -> None:
    assert check_value([1, 2], list[int], "xs") == []
    assert check_value([], list[int], "xs") == []
    assert messages(check_value([1, "a", 2, None], list[int], "xs")) == [
        "xs[1]: expected int, got 'a'",
        "xs[3]: expected int, got None",
    ]


def test_list_rejects_non_list() -> None:
    assert messages(check_value("abc", list[str], "xs")) == ["xs: expected list of str, got 'abc'"]
    assert messages(check_value({"a": 1}, list[str], "xs")) == [
        "xs: expected list of str, got {'a': 1}"
    ]


def test_dict_accepts_only_mappings() -> None:
    assert check_value({"a": 1}, dict[str, int], "d") == []
    assert check_value({}, dict, "d") == []
    assert messages(check_value([1], dict[str, int], "d")) == ["d: expected mapping, got [1]"]


def test_nested_dataclass_value_is_checked_with_full_paths() -> None:
    assert check_value({"size": 3}, Inner, "outer.inner") == []
    assert messages(check_value({"size": "big", "labl": "y"}, Inner, "outer.inner")) == [
        "outer.inner.labl: unknown key. Did you mean 'label'?\n    accepted: size, label",
        "outer.inner.size: expected int, got 'big'",
    ]
    assert messages(check_value(7, Inner, "outer.inner")) == [
        "outer.inner: expected mapping, got 7"
    ]


def test_describe_names_types_readably() -> None:
    assert describe(int) == "int"
    assert describe(list[str]) == "list of str"
    assert describe(Literal["a", "b"]) == "'a' | 'b'"
    assert describe(int | None) == "int or null"
    assert describe(Inner) == "mapping"


# ---------------------------------------------------------------- parse_dataclass


def test_parse_dataclass_builds_nested_instances_and_converts_int_to_float() -> None:
    obj, problems = parse_dataclass(Outer, {"inner": {"size": 2}, "rate": 1, "tags": ["a"]}, "")
    assert problems == []
    assert obj == Outer(inner=Inner(size=2), rate=1.0, tags=["a"])
    assert isinstance(obj.inner, Inner)
    assert type(obj.rate) is float


def test_parse_dataclass_optional_field_keeps_none_and_values() -> None:
    obj, _ = parse_dataclass(Outer, {"inner": {"size": 1}, "limit": None}, "")
    assert obj.limit is None
    obj, _ = parse_dataclass(Outer, {"inner": {"size": 1}, "limit": 5}, "")
    assert obj.limit == 5


def test_parse_dataclass_collects_every_problem() -> None:
    data = {"inner": {"sise": 1}, "rat": 0.1, "flag": "no", "tags": ["a", 2], "mode": "slwo"}
    obj, problems = parse_dataclass(Outer, data, "sec")
    assert obj is None
    assert messages(problems) == [
        "sec.rat: unknown key. Did you mean 'rate'?\n"
        "    accepted: inner, rate, flag, tags, mode, limit",
        "sec.inner.sise: unknown key. Did you mean 'size'?\n    accepted: size, label",
        "sec.inner.size: missing required key (int)",
        "sec.flag: expected bool, got 'no'",
        "sec.tags[1]: expected str, got 2",
        "sec.mode: expected one of 'fast' | 'slow', got 'slwo'. Did you mean 'slow'?",
    ]


def test_parse_dataclass_missing_required_nested_section() -> None:
    obj, problems = parse_dataclass(Outer, {}, "")
    assert obj is None
    assert messages(problems) == ["inner: missing required key (mapping)"]


def test_parse_dataclass_unknown_key_without_close_match() -> None:
    _, problems = parse_dataclass(Inner, {"size": 1, "zzzz": 0}, "")
    assert messages(problems) == ["zzzz: unknown key.\n    accepted: size, label"]


# ---------------------------------------------------------------- suggest


def test_suggest_closest_choice() -> None:
    assert suggest("bahdanu", ["bahdanau", "dot", "general"]) == " Did you mean 'bahdanau'?"
    assert suggest("hidden_sise", ["hidden_size", "num_layers"]) == " Did you mean 'hidden_size'?"


def test_suggest_nothing_when_no_choice_is_close() -> None:
    assert suggest("zzz", ["bahdanau", "dot"]) == ""
    assert suggest("dot", []) == ""


def test_suggest_accepts_any_iterable() -> None:
    assert suggest("lrr", (k for k in {"lr": 1, "seed": 2})) == " Did you mean 'lr'?"
