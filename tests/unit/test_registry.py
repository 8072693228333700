"""Tests for seq2seq.registry: registration rules, lookup, checks, building, --import."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from torch import nn

from seq2seq import registry
from seq2seq.errors import PluginError, Problem, RecipeError
from seq2seq.modules.attention.additive import BahdanauAttention
from seq2seq.modules.attention.multiplicative import DotAttention
from seq2seq.registry import build, check, get, import_modules, names, register

# The built-in attention names as error messages list them.
BUILTIN_ATTENTION = ", ".join(
    n for n, origin in registry.names("attention").items() if origin == registry.BUILTIN
)

pytestmark = pytest.mark.usefixtures("clean_registry")
HERE = f"module {__name__}"


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


class Scaled(nn.Module):
    """A throwaway attention-like component with typed arguments."""

    def __init__(
        self,
        query_size: int,
        key_size: int,
        temperature: float,
        layers: int = 1,
        learn: bool = False,
        act: Literal["tanh", "relu"] = "tanh",
    ) -> None:
        super().__init__()
        self.sizes = (query_size, key_size)
        self.temperature = temperature
        self.layers = layers


# ---------------------------------------------------------------- register()


def test_register_adds_entry_with_module_origin() -> None:
    register("attention", "scaled")(Scaled)
    entry = get("attention", "scaled")
    assert entry.factory is Scaled
    assert entry.origin == HERE
    assert entry.kind == "attention"
    assert entry.name == "scaled"


def test_register_returns_the_factory_unchanged() -> None:
    assert register("attention", "scaled")(Scaled) is Scaled


def test_register_same_factory_twice_is_harmless() -> None:
    register("attention", "scaled")(Scaled)
    register("attention", "scaled")(Scaled)
    assert get("attention", "scaled").factory is Scaled


def test_register_unknown_kind() -> None:
    with pytest.raises(PluginError) as info:
        register("atention", "x")(Scaled)
    expected = f"unknown component kind 'atention' ({HERE}); kinds: encoder, attention"
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize("name", ["Dot", "1dot", "my-attn", "my attn", "", "_x", "dot!"])
def test_register_bad_name(name: str) -> None:
    with pytest.raises(PluginError) as info:
        register("attention", name)(Scaled)
    assert str(info.value) == (
        f"bad attention name {name!r} ({HERE}): use a letter then letters, digits or '_'"
    )
    assert name not in names("attention")


def test_register_non_string_name() -> None:
    with pytest.raises(PluginError, match="bad attention name 3"):
        register("attention", 3)(Scaled)  # type: ignore[arg-type]


def test_register_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(PluginError, match="bad attention name"):
        register("attention", "dot2\n")(Scaled)


class NotCallable:
    """Instances have no __call__."""


def test_register_non_callable() -> None:
    with pytest.raises(PluginError) as info:
        register("attention", "thing")(NotCallable())  # type: ignore[type-var]
    assert str(info.value) == f"attention 'thing' ({HERE}) is not a class or function"
    assert "thing" not in names("attention")


@pytest.mark.parametrize("origin", [None, "module exp"])
def test_register_non_callable_builtin_value_gives_plugin_error(origin: str | None) -> None:
    with contextlib.ExitStack() as stack:
        if origin is not None:
            stack.enter_context(registry.registering_as(origin))
        with pytest.raises(PluginError) as info:
            register("attention", "thing")(42)  # type: ignore[type-var]
    where = origin or "module ?"  # a bare value has no module to name
    assert str(info.value) == f"attention 'thing' ({where}) is not a class or function"


def test_register_refuses_var_keyword_factory() -> None:
    def loose(query_size: int, key_size: int, **options: object) -> None: ...

    with pytest.raises(PluginError) as info:
        register("attention", "loose")(loose)
    message = str(info.value)
    assert f"attention 'loose' ({HERE}) takes **options" in message
    assert "misspelled recipe keys" in message
    assert "loose" not in names("attention")


def test_register_allows_var_positional() -> None:
    def star(query_size: int, key_size: int, *extra: int) -> None: ...

    register("attention", "star")(star)
    assert "star" in names("attention")


def test_duplicate_name_shows_both_origins() -> None:
    class Impostor(DotAttention):
        pass

    with pytest.raises(PluginError) as info:
        register("attention", "dot")(Impostor)
    assert str(info.value) == f"attention 'dot' is registered twice: by built-in and by {HERE}"
    assert get("attention", "dot").factory is DotAttention  # the first one stays


def test_duplicate_between_two_local_origins() -> None:
    with registry.registering_as("module first"):
        register("attention", "scaled")(Scaled)

    class Other(Scaled):
        pass

    with registry.registering_as("module second"), pytest.raises(PluginError) as info:
        register("attention", "scaled")(Other)
    assert "by module first and by module second" in str(info.value)


def test_same_name_in_different_kinds_is_fine() -> None:
    def dot_metric(hyps: list[str], refs: list[str]) -> float:
        return 0.0

    register("metric", "dot")(dot_metric)
    assert get("metric", "dot").factory is dot_metric
    assert get("attention", "dot").factory is DotAttention


# ---------------------------------------------------------------- get() / names()


def test_get_builtin() -> None:
    entry = get("attention", "bahdanau")
    assert entry.factory is BahdanauAttention
    assert entry.origin == "built-in"


def test_get_unknown_name_suggests_and_lists_available() -> None:
    with pytest.raises(PluginError) as info:
        get("attention", "bahdanu")
    assert str(info.value) == (
        "unknown attention 'bahdanu'. Did you mean 'bahdanau'?\n"
        f"    available: {BUILTIN_ATTENTION} (built-in)"
    )


def test_get_unknown_name_without_close_match() -> None:
    with pytest.raises(PluginError) as info:
        get("encoder", "transformer")
    message = str(info.value)
    assert message.startswith("unknown encoder 'transformer'.\n")
    assert "Did you mean" not in message
    assert "available: gru, lstm, rnn (built-in)" in message


def test_available_groups_names_by_origin() -> None:
    register("attention", "scaled")(Scaled)
    with pytest.raises(PluginError) as info:
        get("attention", "scaledd")
    assert "Did you mean 'scaled'?" in str(info.value)
    assert f"available: {BUILTIN_ATTENTION} (built-in); scaled ({HERE})" in str(info.value)


def test_get_unknown_kind() -> None:
    with pytest.raises(PluginError, match="unknown component kind 'atention'; kinds: encoder"):
        get("atention", "dot")


def test_names_are_sorted_with_origins() -> None:
    register("attention", "additive")(Scaled)
    found = names("attention")
    assert list(found) == sorted(found)
    assert found == {"additive": HERE, **dict.fromkeys(BUILTIN_ATTENTION.split(", "), "built-in")}


def test_names_of_every_kind_are_non_empty() -> None:
    for kind in registry.KINDS:
        assert names(kind), kind
        assert set(names(kind).values()) == {"built-in"}


# ---------------------------------------------------------------- check()


def test_check_accepts_bare_name_and_mapping() -> None:
    assert check("attention", "bahdanau", "model.attention") == []
    assert check("attention", {"type": "bahdanau", "hidden_size": 8}, "model.attention") == []
    assert check("encoder", {"type": "gru", "hidden_size": 8, "dropout": 0}, "model.encoder") == []


def test_check_unknown_type_bare_string_uses_the_key_path() -> None:
    [problem] = check("attention", "bahdanu", "model.attention")
    assert problem.path == "model.attention"
    assert problem.message.startswith("unknown attention 'bahdanu'. Did you mean 'bahdanau'?")
    assert f"available: {BUILTIN_ATTENTION} (built-in)" in problem.message


def test_check_unknown_type_in_mapping_points_at_type() -> None:
    [problem] = check("attention", {"type": "bahdanu", "hidden_size": 8}, "model.attention")
    assert problem.path == "model.attention.type"
    assert "Did you mean 'bahdanau'?" in problem.message


def test_check_mapping_without_type() -> None:
    assert messages(check("attention", {"hidden_size": 8}, "model.attention")) == [
        f"model.attention.type: missing: name the attention ({BUILTIN_ATTENTION} (built-in))"
    ]


def test_check_type_not_a_string() -> None:
    assert messages(check("encoder", {"type": 3}, "model.encoder")) == [
        "model.encoder.type: expected an encoder name, got 3"
    ]


def test_check_spec_neither_string_nor_mapping() -> None:
    [problem] = check("attention", ["dot"], "model.attention")
    assert problem.path == "model.attention"
    assert "mapping with 'type', got ['dot']" in problem.message


def test_check_misspelled_argument_suggests_and_lists_accepted() -> None:
    [problem] = check("encoder", {"type": "gru", "hidden_sise": 8}, "model.encoder")
    assert problem.path == "model.encoder.hidden_sise"
    assert problem.message == (
        "not an argument of encoder 'gru'. Did you mean 'hidden_size'?\n"
        "    accepts: hidden_size, num_layers, bidirectional, dropout"
    )  # input_size is provided by the builder, so it is not offered


def test_check_unknown_argument_of_factory_without_settable_arguments() -> None:
    [problem] = check("attention", {"type": "dot", "scale": 2.0}, "model.attention")
    assert problem.message == "not an argument of attention 'dot'.\n    accepts: no arguments"


@pytest.mark.parametrize(
    ("kind", "spec", "key", "by"),
    [
        ("attention", {"type": "bahdanau", "key_size": 8}, "key_size", "the encoder output size"),
        ("attention", {"type": "dot", "query_size": 8}, "query_size", "the decoder"),
        ("encoder", {"type": "gru", "input_size": 8}, "input_size", "the embedding size"),
        ("optimizer", {"type": "adam", "lr": 0.1}, "lr", "train.lr"),
    ],
)
def test_check_provided_argument_set_in_recipe(
    kind: str, spec: dict[str, object], key: str, by: str
) -> None:
    assert messages(check(kind, spec, f"x.{kind}")) == [
        f"x.{kind}.{key}: set by {by}; remove it from the recipe"
    ]


def test_check_missing_required_argument() -> None:
    register("attention", "scaled")(Scaled)
    assert messages(check("attention", "scaled", "model.attention")) == [
        "model.attention.temperature: missing required argument of attention 'scaled'"
    ]
    assert check("attention", {"type": "scaled", "temperature": 2.0}, "model.attention") == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("layers", "two", "expected int, got 'two'"),
        ("layers", 2.0, "expected int, got 2.0"),
        ("layers", True, "expected int, got True"),
        ("temperature", "hot", "expected float, got 'hot'"),
        ("temperature", False, "expected float, got False"),
        ("learn", "yes", "expected bool, got 'yes'"),
        ("learn", 1, "expected bool, got 1"),
        ("act", "relu6", "expected one of 'tanh' | 'relu', got 'relu6'. Did you mean 'relu'?"),
    ],
)
def test_check_wrong_argument_types(key: str, value: object, expected: str) -> None:
    register("attention", "scaled")(Scaled)
    spec = {"type": "scaled", "temperature": 1.0, key: value}
    assert messages(check("attention", spec, "model.attention")) == [
        f"model.attention.{key}: {expected}"
    ]


def test_check_float_argument_accepts_int() -> None:
    register("attention", "scaled")(Scaled)
    assert check("attention", {"type": "scaled", "temperature": 2}, "a") == []


def test_check_builtin_argument_types() -> None:
    spec = {"type": "rnn", "hidden_size": "8", "bidirectional": "no", "nonlinearity": "sigmoid"}
    assert messages(check("encoder", spec, "model.encoder")) == [
        "model.encoder.hidden_size: expected int, got '8'",
        "model.encoder.bidirectional: expected bool, got 'no'",
        "model.encoder.nonlinearity: expected one of 'tanh' | 'relu', got 'sigmoid'.",
    ]


def test_check_reports_every_problem_of_one_spec() -> None:
    register("attention", "scaled")(Scaled)
    spec = {"type": "scaled", "key_size": 4, "layrs": 2, "learn": "no"}
    assert [p.path for p in check("attention", spec, "m.a")] == [
        "m.a.key_size",
        "m.a.layrs",
        "m.a.learn",
        "m.a.temperature",
    ]


def test_check_builder_function_signature() -> None:
    def make(query_size: int, key_size: int, width: int = 4) -> nn.Module:
        return nn.Linear(key_size, width)

    register("attention", "made")(make)
    assert check("attention", {"type": "made", "width": 3}, "a") == []
    assert messages(check("attention", {"type": "made", "widht": 3}, "a")) == [
        "a.widht: not an argument of attention 'made'. Did you mean 'width'?\n    accepts: width"
    ]


# ---------------------------------------------------------------- build()


def test_build_passes_recipe_and_provided_arguments() -> None:
    spec = {"type": "bahdanau", "hidden_size": 5}
    module = build("attention", spec, where="model.attention", query_size=3, key_size=7)
    assert isinstance(module, BahdanauAttention)
    assert module.query_proj.in_features == 3
    assert module.key_proj.in_features == 7
    assert module.key_proj.out_features == 5


def test_build_drops_provided_arguments_the_factory_does_not_take() -> None:
    calls: list[dict[str, object]] = []

    def greedy_like(max_length: int = 5) -> str:
        calls.append({"max_length": max_length})
        return "built"

    register("search", "probe")(greedy_like)
    result = build("search", {"type": "probe", "max_length": 9}, where="s", unused=1)
    assert result == "built"
    assert calls == [{"max_length": 9}]


def test_build_refuses_an_invalid_spec_with_recipe_error() -> None:
    with pytest.raises(RecipeError) as info:
        build("encoder", {"type": "gru", "hiden_size": 8}, where="model.encoder", input_size=4)
    assert [p.path for p in info.value.problems] == ["model.encoder.hiden_size"]
    assert str(info.value).startswith("the recipe has 1 problem\n  model.encoder.hiden_size:")


def test_build_turns_value_error_into_recipe_error_with_path() -> None:
    with pytest.raises(RecipeError) as info:
        build("attention", "dot", where="model.attention", query_size=4, key_size=8)
    [problem] = info.value.problems
    assert problem.path == "model.attention"
    assert "dot attention needs decoder hidden_size (4) equal to the encoder" in problem.message
    assert isinstance(info.value.__cause__, ValueError)


def test_build_lets_other_exceptions_through() -> None:
    def broken(max_length: int = 1) -> None:
        raise RuntimeError("internal")

    register("search", "broken")(broken)
    with pytest.raises(RuntimeError, match="internal"):
        build("search", "broken", where="search")


# ---------------------------------------------------------------- import_modules()


@pytest.fixture
def local_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], str]]:
    """Write a module into tmp_path and make it importable; forget it afterwards."""
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        written.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


LOCAL_ATTENTION = '''
"""A local experiment module."""
from seq2seq.registry import register



@register("attention", "local_attn")
class LocalAttention:
    def __init__(self, query_size: int, key_size: int, width: int = 2) -> None:
        self.sizes = (query_size, key_size)
        self.width = width
'''


def test_import_modules_registers_with_module_origin(
    local_module: Callable[[str, str], str],
) -> None:
    name = local_module("my_exp_registry_test", LOCAL_ATTENTION)
    assert "local_attn" not in names("attention")
    import_modules([name])
    assert names("attention")["local_attn"] == "module my_exp_registry_test"
    assert get("attention", "local_attn").origin == "module my_exp_registry_test"
    spec = {"type": "local_attn", "width": 5}
    built = build("attention", spec, where="a", query_size=1, key_size=2)
    assert (built.sizes, built.width) == ((1, 2), 5)


def test_import_modules_missing_module() -> None:
    with pytest.raises(PluginError) as info:
        import_modules(["no_such_module_for_seq2seq_tests"])
    assert str(info.value) == (
        "--import no_such_module_for_seq2seq_tests: "
        "No module named 'no_such_module_for_seq2seq_tests'"
    )


def test_import_modules_reports_a_failing_import_inside_the_module(
    local_module: Callable[[str, str], str],
) -> None:
    name = local_module("my_exp_broken_dep", "import no_such_dependency_xyz\n")
    with pytest.raises(PluginError, match="--import my_exp_broken_dep: No module named 'no_such"):
        import_modules([name])


def test_import_modules_duplicate_of_builtin_names_the_module(
    local_module: Callable[[str, str], str],
) -> None:
    source = LOCAL_ATTENTION.replace('"local_attn"', '"dot"')
    name = local_module("my_exp_dup", source)
    with pytest.raises(PluginError) as info:
        import_modules([name])
    assert str(info.value) == (
        "attention 'dot' is registered twice: by built-in and by module my_exp_dup"
    )
