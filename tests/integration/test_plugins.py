"""Entry-point plugins: listed from metadata, loaded lazily, checked, built, and their failures."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from seq2seq import registry
from seq2seq.assemble import build_model
from seq2seq.errors import PluginError, RecipeError
from seq2seq.modules.attention.multiplicative import DotAttention
from seq2seq.recipe import parse_recipe
from seq2seq.registry import build, check, get, names, plugin_problems
from tests.conftest import tiny_recipe

# The built-in attention names as error messages list them.
BUILTIN_ATTENTION = ", ".join(
    n for n, origin in registry.names("attention").items() if origin == registry.BUILTIN
)

GROUP = "seq2seq.attention"
DIST = "seq2seq-scaled-attention"
VERSION = "0.3.1"
ORIGIN = f"{DIST} {VERSION}"

SCALED_SOURCE = '''
"""A third-party attention: scaled bilinear scores."""

from __future__ import annotations

import torch
from torch import Tensor, nn



class ScaledAttention(nn.Module):
    """score = qᵀ W k / temperature; padding gets exactly zero weight."""

    def __init__(self, query_size: int, key_size: int, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.key_proj = nn.Linear(key_size, query_size, bias=False)
        self.temperature = temperature

    def prepare(self, memory: Tensor) -> Tensor:
        """(B, S, M) → keys (B, S, H)."""
        return self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S)."""
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        scores = torch.bmm(query, keys.transpose(1, 2)) / self.temperature  # (B, T, S)
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)  # (B, T, M)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights
'''


@pytest.fixture
def plugin(fake_plugin: Callable[..., Path]) -> Iterator[Callable[..., str]]:
    """Install a fake distribution; its module is forgotten after the test."""
    modules: list[str] = []

    def install(
        module: str,
        entries: dict[str, str],
        *,
        dist: str = DIST,
        version: str = VERSION,
        source: str = SCALED_SOURCE,
        group: str = GROUP,
    ) -> str:
        targets = {name: f"{module}:{attr}" for name, attr in entries.items()}
        fake_plugin(dist, module, source, {group: targets}, version=version)
        modules.append(module)
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)


# ---------------------------------------------------------------- a working plugin


def test_plugin_is_listed_without_importing_it(plugin: Callable[..., str]) -> None:
    module = plugin("s2s_scaled_listed", {"scaled": "ScaledAttention"})
    found = names("attention")
    assert found["scaled"] == ORIGIN
    assert found["bahdanau"] == "built-in"
    assert list(found) == sorted(found)
    assert plugin_problems() == []
    get("attention", "bahdanau")
    assert module not in sys.modules


def test_plugin_appears_in_unknown_name_errors(plugin: Callable[..., str]) -> None:
    module = plugin("s2s_scaled_hint", {"scaled": "ScaledAttention"})
    with pytest.raises(PluginError) as info:
        get("attention", "scaledd")
    assert str(info.value) == (
        "unknown attention 'scaledd'. Did you mean 'scaled'?\n"
        f"    available: {BUILTIN_ATTENTION} (built-in); scaled ({ORIGIN})"
    )
    assert module not in sys.modules


def test_plugin_loads_lazily_on_get(plugin: Callable[..., str]) -> None:
    module = plugin("s2s_scaled_lazy", {"scaled": "ScaledAttention"})
    assert module not in sys.modules
    entry = get("attention", "scaled")
    assert module in sys.modules
    assert entry.factory is sys.modules[module].ScaledAttention
    assert (entry.kind, entry.name, entry.origin) == ("attention", "scaled", ORIGIN)
    assert get("attention", "scaled") is entry  # loaded once, then served from the table
    assert names("attention")["scaled"] == ORIGIN


def test_plugin_passes_check(plugin: Callable[..., str]) -> None:
    plugin("s2s_scaled_check", {"scaled": "ScaledAttention"})
    assert check("attention", "scaled", "model.attention") == []
    assert check("attention", {"type": "scaled", "temperature": 2}, "model.attention") == []
    problems = check("attention", {"type": "scaled", "temprature": 2.0}, "model.attention")
    assert [str(p) for p in problems] == [
        "model.attention.temprature: not an argument of attention 'scaled'. "
        "Did you mean 'temperature'?\n    accepts: temperature"
    ]
    problems = check("attention", {"type": "scaled", "temperature": "hot"}, "model.attention")
    assert [str(p) for p in problems] == ["model.attention.temperature: expected float, got 'hot'"]
    problems = check("attention", {"type": "scaled", "key_size": 3}, "model.attention")
    assert [str(p) for p in problems] == [
        "model.attention.key_size: set by the encoder output size; remove it from the recipe"
    ]


def test_plugin_builds_and_follows_the_attention_protocol(plugin: Callable[..., str]) -> None:
    plugin("s2s_scaled_build", {"scaled": "ScaledAttention"})
    spec = {"type": "scaled", "temperature": 0.5}
    attention = build("attention", spec, where="model.attention", query_size=4, key_size=6)
    assert attention.temperature == 0.5
    memory = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    keys = attention.prepare(memory)
    assert keys.shape == (2, 5, 4)
    context, weights = attention(torch.randn(2, 4), keys, memory, mask)
    assert context.shape == (2, 6)
    assert weights.shape == (2, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2))
    assert torch.all(weights[1, 3:] == 0)


def test_plugin_value_error_becomes_recipe_error(plugin: Callable[..., str]) -> None:
    plugin("s2s_scaled_value", {"scaled": "ScaledAttention"})
    spec = {"type": "scaled", "temperature": 0.0}
    with pytest.raises(RecipeError) as info:
        build("attention", spec, where="model.attention", query_size=4, key_size=4)
    assert [str(p) for p in info.value.problems] == [
        "model.attention: temperature must be positive, got 0.0"
    ]


def test_recipe_naming_a_plugin_parses_and_builds(
    plugin: Callable[..., str], tmp_path: Path
) -> None:
    module = plugin("s2s_scaled_recipe", {"scaled": "ScaledAttention"})
    data = tiny_recipe(tmp_path, model={"attention": {"type": "scaled", "temperature": 2.0}})
    recipe = parse_recipe(data)
    assert recipe.model.attention == {"type": "scaled", "temperature": 2.0}
    model = build_model(recipe.model, src_vocab_size=11, tgt_vocab_size=13)
    attention = model.decoder.attention
    assert type(attention) is sys.modules[module].ScaledAttention
    assert attention.temperature == 2.0
    # Sizes came from the builders: decoder hidden 32 (query), bidirectional GRU 2 × 16 (keys).
    assert attention.key_proj.in_features == 32
    assert attention.key_proj.out_features == 32
    src = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0]])
    lengths = torch.tensor([4, 3])
    tgt_in = torch.tensor([[2, 6, 5], [2, 8, 7]])
    logits = model(src, lengths, tgt_in)
    assert logits.shape == (2, 3, 13)
    assert torch.isfinite(logits).all()


def test_recipe_with_misspelled_plugin_name(plugin: Callable[..., str], tmp_path: Path) -> None:
    plugin("s2s_scaled_typo", {"scaled": "ScaledAttention"})
    data = tiny_recipe(tmp_path, model={"attention": {"type": "scald"}})
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    [problem] = info.value.problems
    assert problem.path == "model.attention.type"
    assert problem.message.startswith("unknown attention 'scald'. Did you mean 'scaled'?")
    assert f"scaled ({ORIGIN})" in problem.message


def test_plugin_module_using_register_decorator(plugin: Callable[..., str]) -> None:
    source = SCALED_SOURCE.replace(
        "class ScaledAttention", '@register("attention", "decorated")\nclass ScaledAttention'
    ).replace("import torch\n", "import torch\nfrom seq2seq.registry import register\n", 1)
    assert source.count("@register") == 1
    plugin("s2s_decorated", {"decorated": "ScaledAttention"}, source=source)
    assert "decorated" not in {n for n, o in names("attention").items() if o == "built-in"}
    entry = get("attention", "decorated")
    assert entry.origin == ORIGIN  # the decorator ran inside the plugin's origin
    assert names("attention")["decorated"] == ORIGIN


# ---------------------------------------------------------------- failing plugins


def test_plugin_import_error_names_distribution_and_cause(plugin: Callable[..., str]) -> None:
    plugin(
        "s2s_location",
        {"monotonic": "MonotonicAttention"},
        dist="seq2seq-location-attention",
        version="0.1.0",
        source="import scipy_is_not_installed_here\n",
    )
    with pytest.raises(PluginError) as info:
        get("attention", "monotonic")
    assert str(info.value) == (
        "attention 'monotonic' from seq2seq-location-attention 0.1.0\n"
        "  (entry point seq2seq.attention: monotonic = s2s_location:MonotonicAttention)\n"
        "  failed to load: ModuleNotFoundError: No module named 'scipy_is_not_installed_here'"
    )
    # Everything else keeps working.
    assert names("attention")["monotonic"] == "seq2seq-location-attention 0.1.0"
    assert get("attention", "bahdanau").origin == "built-in"
    assert check("attention", "dot", "model.attention") == []
    assert plugin_problems() == []


def test_plugin_raising_at_import_is_reported(plugin: Callable[..., str]) -> None:
    plugin("s2s_boom", {"boom": "Boom"}, source="raise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError) as info:
        get("attention", "boom")
    assert f"attention 'boom' from {ORIGIN}" in str(info.value)
    assert "failed to load: RuntimeError: boom at import" in str(info.value)
    with pytest.raises(PluginError, match="RuntimeError: boom at import"):
        get("attention", "boom")  # still reported, never half-registered


def test_plugin_with_missing_attribute(plugin: Callable[..., str]) -> None:
    plugin("s2s_noattr", {"ghost": "GhostAttention"})
    with pytest.raises(PluginError, match="failed to load: AttributeError: .*GhostAttention"):
        get("attention", "ghost")


def test_plugin_taking_var_keyword_is_refused(plugin: Callable[..., str]) -> None:
    source = "class Loose:\n    def __init__(self, query_size, key_size, **kw):\n        pass\n"
    plugin("s2s_loose", {"loose": "Loose"}, source=source)
    with pytest.raises(PluginError) as info:
        get("attention", "loose")
    assert str(info.value).startswith(f"attention 'loose' ({ORIGIN}) takes **kw")


def test_failing_plugin_in_a_recipe(plugin: Callable[..., str], tmp_path: Path) -> None:
    plugin("s2s_broken_recipe", {"broken": "Broken"}, source="import not_a_module_xyz\n")
    with pytest.raises(RecipeError) as info:
        parse_recipe(tiny_recipe(tmp_path, model={"attention": "broken"}))
    [problem] = info.value.problems
    assert problem.path == "model.attention"
    assert problem.message.startswith(f"attention 'broken' from {ORIGIN}\n")
    assert "No module named 'not_a_module_xyz'" in problem.message
    assert parse_recipe(tiny_recipe(tmp_path)).model.attention == "bahdanau"


# ---------------------------------------------------------------- clashes


def test_plugin_clashing_with_builtin(plugin: Callable[..., str]) -> None:
    module = plugin("s2s_dot_clash", {"dot": "ScaledAttention"}, dist="fancy-dot", version="2.0")
    assert plugin_problems() == [
        "attention 'dot' from fancy-dot 2.0 clashes with the built-in attention 'dot'; "
        "the built-in is used"
    ]
    entry = get("attention", "dot")
    assert entry.factory is DotAttention
    assert entry.origin == "built-in"
    assert names("attention")["dot"] == "built-in"
    assert module not in sys.modules


def test_two_distributions_with_the_same_name(plugin: Callable[..., str]) -> None:
    first = plugin("s2s_twin_a", {"twin": "ScaledAttention"}, dist="twin-a", version="0.1")
    second = plugin("s2s_twin_b", {"twin": "ScaledAttention"}, dist="twin-b", version="0.2")
    assert names("attention")["twin"] == "twin-a 0.1, twin-b 0.2"
    assert plugin_problems() == [
        "attention 'twin' is provided by several distributions: twin-a 0.1 and twin-b 0.2"
    ]
    with pytest.raises(PluginError) as info:
        get("attention", "twin")
    assert str(info.value) == (
        "attention 'twin' is provided by several distributions: twin-a 0.1 and twin-b 0.2; "
        "uninstall one of them"
    )
    assert first not in sys.modules
    assert second not in sys.modules


def test_plugins_of_other_kinds_are_separate(plugin: Callable[..., str]) -> None:
    plugin("s2s_other_kind", {"scaled": "ScaledAttention"}, group="seq2seq.encoder")
    assert names("encoder")["scaled"] == ORIGIN
    assert "scaled" not in names("attention")


# ---------------------------------------------------------------- SEQ2SEQ_NO_PLUGINS


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_no_plugins_env_hides_plugins(
    plugin: Callable[..., str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    plugin("s2s_hidden", {"scaled": "ScaledAttention", "dot": "ScaledAttention"})
    monkeypatch.setenv("SEQ2SEQ_NO_PLUGINS", value)
    assert names("attention") == dict.fromkeys(BUILTIN_ATTENTION.split(", "), "built-in")
    assert plugin_problems() == []
    with pytest.raises(PluginError) as info:
        get("attention", "scaled")
    assert str(info.value).startswith("unknown attention 'scaled'.")
    assert DIST not in str(info.value)
    assert "s2s_hidden" not in sys.modules


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_no_plugins_env_false_values_keep_plugins(
    plugin: Callable[..., str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    plugin("s2s_shown", {"scaled": "ScaledAttention"})
    monkeypatch.setenv("SEQ2SEQ_NO_PLUGINS", value)
    assert names("attention")["scaled"] == ORIGIN


def test_cli_reports_clashes_and_keeps_working(
    plugin: Callable[..., str], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command warns about a clash, naming the distribution, and still runs."""
    from seq2seq.cli import main

    plugin("s2s_dot_clash2", {"dot": "ScaledAttention"}, dist="fancy-dot", version="2.0")
    with pytest.raises(SystemExit) as exit_info:
        main(["components", "attention"])
    assert exit_info.value.code == 0
    assert "attention 'dot' from fancy-dot 2.0 clashes with the built-in" in caplog.text
    assert "dot" in capsys.readouterr().out
