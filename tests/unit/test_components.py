"""Contract tests over every registered encoder, attention and decoder (seq2seq.testing)."""

from __future__ import annotations

import pytest
import torch

from seq2seq import registry
from seq2seq.modules.attention import BahdanauAttention
from seq2seq.testing import M, check_attention, check_decoder, check_encoder


def _builtin(kind: str) -> list[str]:
    return [n for n, origin in registry.names(kind).items() if origin == registry.BUILTIN]


@pytest.mark.parametrize("name", _builtin("attention"))
def test_attention_contract(name: str) -> None:
    """Every attention masks padding, normalises, and passes gradients."""
    size = M if name == "dot" else 10
    check_attention(name, query_size=size)


@pytest.mark.parametrize("name", _builtin("encoder"))
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_contract(name: str, bidirectional: bool, num_layers: int) -> None:
    """Every encoder, uni- and bidirectional, shallow and stacked."""
    check_encoder(
        {"type": name, "hidden_size": 6, "bidirectional": bidirectional, "num_layers": num_layers}
    )


@pytest.mark.parametrize("name", _builtin("decoder"))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", ["bahdanau", "general", None])
def test_decoder_contract(name: str, cell: str, input_feeding: bool, attention: str | None) -> None:
    """Every decoder with each cell, with and without input feeding and attention."""
    spec = {
        "type": name,
        "cell": cell,
        "hidden_size": 10,
        "input_feeding": input_feeding,
        "num_layers": 2,
        "dropout": 0.0,
    }
    check_decoder(spec, attention)


@pytest.mark.parametrize("init", ["zeros", "bridge", "mean"])
def test_decoder_inits(init: str) -> None:
    """Each way of starting the decoder from the encoder satisfies the contract."""
    check_decoder({"type": "luong", "hidden_size": 10, "init": init, "dropout": 0.0})


def test_init_last_needs_matching_sizes() -> None:
    """init 'last' copies the encoder state, so sizes must match; the error says how to fix."""
    with pytest.raises(registry.RecipeError, match="init 'last' needs decoder hidden_size"):
        check_decoder({"type": "luong", "hidden_size": 10, "init": "last"})
    check_decoder({"type": "luong", "hidden_size": M, "init": "last", "dropout": 0.0})


def test_dot_attention_rejects_mismatched_sizes() -> None:
    """dot attention cannot score vectors of different sizes: a recipe error, not a crash."""
    with pytest.raises(registry.RecipeError, match="dot attention needs decoder hidden_size"):
        check_attention("dot", query_size=10)


def test_bahdanau_scores_follow_the_formula() -> None:
    """score = vᵀ tanh(W q + U k), softmaxed over unmasked positions."""
    att = BahdanauAttention(query_size=3, key_size=4, hidden_size=5)
    q, memory = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    _, weights = att(q, att.prepare(memory), memory, mask)
    energy = att.energy.weight[0]
    raw = torch.tanh(att.query_proj(q)[:, None] + memory @ att.key_proj.weight.T) @ energy
    expected0 = torch.softmax(raw[0], -1)
    expected1 = torch.softmax(raw[1, :2], -1)
    assert torch.allclose(weights[0], expected0, atol=1e-6)
    assert torch.allclose(weights[1, :2], expected1, atol=1e-6)
    assert torch.all(weights[1, 2:] == 0)
