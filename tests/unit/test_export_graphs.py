"""Tracing encode/step: the traced model matches the eager one for every kind of decoder state."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.assemble import build_model
from seq2seq.errors import BundleError
from seq2seq.export.graphs import StateLayout, example_batch, flatten, layout_of, unflatten
from seq2seq.export.traced import TracedModel
from seq2seq.export.write import quantize_int8, trace, verify
from seq2seq.model import Seq2Seq
from seq2seq.recipe import parse_recipe
from tests.conftest import tiny_recipe

VOCAB = 23

VARIANTS: dict[str, dict[str, Any]] = {
    "gru-luong-feeding": {},
    "lstm-luong-feeding": {
        "encoder": {"type": "lstm", "hidden_size": 16},
        "decoder": {"type": "luong", "cell": "lstm", "hidden_size": 32, "dropout": 0.0},
    },
    "bahdanau-coverage-copy": {
        "decoder": {"type": "bahdanau", "hidden_size": 32, "dropout": 0.0},
        "attention": {"type": "bahdanau", "coverage": True},
        "copy": True,
    },
    "location": {"attention": "location"},
    "multihead": {"attention": {"type": "multihead", "heads": 2}},
    "no-attention": {"attention": None},
    "rnn-two-layers": {
        "encoder": {"type": "rnn", "hidden_size": 16, "num_layers": 2},
        "decoder": {"type": "luong", "hidden_size": 32, "num_layers": 2, "dropout": 0.0},
    },
}


def make_model(**model: Any) -> Seq2Seq:
    """A random tiny model (eval mode) built from the test recipe with `model` changes."""
    recipe = parse_recipe(tiny_recipe(Path("data"), model=model), "test")
    return build_model(recipe.model, VOCAB, VOCAB).eval()


def reload(graphs: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Save and load again, as an export dir does."""
    buffer = io.BytesIO()
    torch.jit.save(graphs, buffer)
    return torch.jit.load(io.BytesIO(buffer.getvalue()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_traced_model_matches_eager_on_other_shapes(variant: str, int8: bool) -> None:
    """Batches of other sizes (one sentence too) and lengths, several steps, after a reload."""
    model = make_model(**VARIANTS[variant])
    if int8:
        model = quantize_int8(model)
    graphs, layout = trace(model, VOCAB)
    traced = TracedModel(reload(graphs), layout, model.specials)
    assert verify(model, traced, VOCAB) < 1e-5


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int8_quantizes_rnn_and_linear_layers() -> None:
    """GRU, LSTM and Linear modules become dynamic-quantized ones; embeddings stay float."""
    from torch.ao.nn.quantized import dynamic

    model = quantize_int8(make_model(**VARIANTS["lstm-luong-feeding"]))
    kinds = {type(m) for m in model.modules()}
    assert {dynamic.LSTM, dynamic.Linear} <= kinds
    assert not kinds & {torch.nn.LSTM, torch.nn.Linear}
    assert model.src_embed.weight.dtype == torch.float32


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_step_number_dependence_is_caught() -> None:
    """local-m attention reads the step number, which a trace freezes: verification sees it."""
    model = make_model(attention={"type": "local", "mode": "m"})
    graphs, layout = trace(model, VOCAB)
    assert verify(model, TracedModel(graphs, layout, model.specials), VOCAB) > 1e-3


def test_flatten_unflatten_round_trip() -> None:
    """Every tensor survives in place; fields first set by a step start at zero."""
    model = make_model(**VARIANTS["bahdanau-coverage-copy"])
    src, lengths = example_batch(VOCAB, [5, 3])
    with torch.no_grad():
        state = model.encode(src, lengths)
        _, after = model.step(torch.full((2,), model.specials.bos), state)
    layout = layout_of(state, after)
    assert layout.names() == [
        "hidden", "memory", "mask", "keys", "weights", "context", "coverage", "extra.src"
    ]  # fmt: skip
    flat = flatten(state, layout)
    assert float(flat[layout.names().index("coverage")].abs().sum()) == 0.0
    back = unflatten(flatten(after, layout, outputs=True), layout, position=4, outputs=True)
    assert back.position == 4
    assert torch.equal(back.extra["src"], src)
    assert back.weights is not None and after.weights is not None
    assert torch.equal(back.weights, after.weights)
    assert StateLayout.from_dict(layout.to_dict()) == layout


def test_layout_rejects_unknown_fields() -> None:
    """A damaged bundle.json layout is an error, not a silently wrong state."""
    with pytest.raises(ValueError, match="unknown decoder state fields"):
        StateLayout.from_dict(
            {"lstm": False, "fields": ["keys", "nonsense"], "extra": [], "produced": []}
        )


def test_missing_quantize_dynamic_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch without quantize_dynamic says so instead of failing deep inside."""
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")
    with pytest.raises(BundleError, match="no longer has; export without --quantize"):
        quantize_int8(make_model())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_per_head_weights_come_out_of_the_traced_step() -> None:
    """Multi-head attention's per-head weights (for attention displays) are a step output."""
    model = make_model(**VARIANTS["multihead"])
    graphs, layout = trace(model, VOCAB)
    assert layout.produced == ("head_weights",) and "head_weights" not in layout.extra
    traced = TracedModel(graphs, layout, model.specials)
    src, lengths = example_batch(VOCAB, [6, 2])
    with torch.no_grad():
        _, state = traced.step(torch.full((2,), 2), traced.encode(src, lengths))
    assert state.head_weights is not None and state.head_weights.shape == (2, 2, 6)
