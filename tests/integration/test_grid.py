"""Every encoder × attention × decoder combination builds from a recipe and trains; a
representative subset learns the reversal task."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq import registry
from seq2seq.bundle import load_run
from seq2seq.inference import translate_texts
from seq2seq.recipe import parse_recipe
from seq2seq.registry import build
from seq2seq.training.run import train
from tests.conftest import reversal_pairs, tiny_recipe


def _builtin(kind: str) -> list[str]:
    return [n for n, origin in registry.names(kind).items() if origin == registry.BUILTIN]


ENCODERS = _builtin("encoder")
ATTENTIONS = _builtin("attention")
DECODERS = _builtin("decoder")


def _attention(name: str) -> object:
    return {"type": name} if name != "dot" else "dot"


def _model(encoder: str, attention: str, decoder: str, cell: str = "gru", size: int = 16) -> dict:
    # dot attention scores q·k directly, so the decoder size equals the encoder output (2 × 8)
    return {
        "embedding_dim": 16,
        "encoder": {"type": encoder, "hidden_size": size // 2},
        "attention": _attention(attention),
        "decoder": {"type": decoder, "cell": cell, "hidden_size": size, "dropout": 0.0},
    }


def _train_briefly(data: Path, out: Path, model: dict, steps: int = 3, **train_cfg: object) -> None:
    recipe = tiny_recipe(data, model=model, train={"max_steps": steps, **train_cfg})
    train(parse_recipe(recipe), out)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_each_attention_and_decoder_trains(reversal_dir, tmp_path, attention, decoder) -> None:
    """Every attention with every decoder: a recipe builds, trains and checkpoints."""
    _train_briefly(reversal_dir, tmp_path / "run", _model("gru", attention, decoder))
    assert load_run(tmp_path / "run").model is not None


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_full_grid_trains(reversal_dir, tmp_path, encoder, attention, decoder, cell) -> None:
    """The whole grid, both cells (slow)."""
    _train_briefly(reversal_dir, tmp_path / "run", _model(encoder, attention, decoder, cell))


def test_training_features_together(reversal_dir, tmp_path) -> None:
    """Copy, coverage attention with its loss, scheduled sampling and freezing train together."""
    model = _model("lstm", "bahdanau", "luong", "lstm")
    model["attention"] = {"type": "bahdanau", "coverage": True}
    model.update({"copy": True, "freeze": ["src_embed"]})
    _train_briefly(
        reversal_dir,
        tmp_path / "run",
        model,
        steps=4,
        teacher_forcing={"schedule": "linear", "start": 1.0, "end": 0.5, "k": 0.1},
        coverage_loss={"weight": 1.0, "start_step": 2},
    )
    assert (tmp_path / "run" / "checkpoints" / "latest.json").exists()


def exact_match(run: Path) -> float:
    """Share of unseen digit strings reversed exactly by greedy decoding."""
    tests = reversal_pairs(200, seed=99)
    loaded = load_run(run)
    outputs = translate_texts(loaded, build("search", "greedy", where="s"), [s for s, _ in tests])
    return sum(o == r for o, (_, r) in zip(outputs, tests, strict=True)) / len(tests)


LEARNERS = [
    pytest.param("lstm", "general", "luong", "lstm", id="lstm-general-luong"),
    # GRU + additive attention already learns in test_learns_reversal.py (luong decoder); this cell
    # adds only the bahdanau decoder class, so it runs with the slow set to keep CI under budget.
    pytest.param(
        "gru", "bahdanau", "bahdanau", "gru", id="gru-bahdanau-bahdanau", marks=pytest.mark.slow
    ),
    *[
        pytest.param("gru", a, "luong", "gru", id=f"gru-{a}-luong", marks=pytest.mark.slow)
        for a in ATTENTIONS
        if a not in ("none",)
    ],
    pytest.param(
        "lstm", "bahdanau", "bahdanau", "lstm", id="lstm-bahdanau-bahdanau", marks=pytest.mark.slow
    ),
]


@pytest.mark.parametrize(("encoder", "attention", "decoder", "cell"), LEARNERS)
def test_learns_reversal(reversal_dir, tmp_path, encoder, attention, decoder, cell) -> None:
    """≥ 95 % exact match on unseen strings."""
    model = _model(encoder, attention, decoder, cell, size=64)
    model["embedding_dim"] = 32
    _train_briefly(
        reversal_dir,
        tmp_path / "run",
        model,
        steps=900,
        max_epochs=30,
        lr=0.005,
        batch_tokens=800,
        validation={"every": 300, "select": "bleu"},
    )
    assert exact_match(tmp_path / "run") >= 0.95
