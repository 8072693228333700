"""Contract tests over every registered encoder, attention and decoder (seq2seq.testing)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from seq2seq import registry
from seq2seq.modules.attention.additive import BahdanauAttention, LocationAttention
from seq2seq.modules.attention.multihead import MultiHeadAttention
from seq2seq.modules.protocols import AlignmentHistory
from seq2seq.testing import M, check_attention, check_decoder, check_encoder


def _builtin(kind: str) -> list[str]:
    return [n for n, origin in registry.names(kind).items() if origin == registry.BUILTIN]


ATTENTIONS = [n for n in _builtin("attention") if n != "none"]


@pytest.mark.parametrize("name", ATTENTIONS)
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
@pytest.mark.parametrize("attention", ["bahdanau", "general", "location", None])
def test_decoder_contract(name: str, cell: str, input_feeding: bool, attention: str | None) -> None:
    """Every decoder with each cell, with and without input feeding and attention."""
    spec: dict[str, object] = {
        "type": name,
        "cell": cell,
        "hidden_size": 10,
        "num_layers": 2,
        "dropout": 0.0,
    }
    if name == "luong":
        spec["input_feeding"] = input_feeding
    elif input_feeding:
        pytest.skip("only the luong decoder has input feeding")
    check_decoder(spec, attention)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("init", ["zeros", "bridge", "mean"])
def test_decoder_inits(decoder: str, init: str) -> None:
    """Each way of starting the decoder from the encoder satisfies the contract."""
    check_decoder({"type": decoder, "hidden_size": 10, "init": init, "dropout": 0.0})


@pytest.mark.usefixtures("clean_registry")
def test_decoder_check_catches_a_wrong_step_tokens() -> None:
    """check_decoder holds a decoder's step_tokens to its step: one that feeds the wrong tokens
    (here the previous row's) fails, the built-in one passes."""
    from seq2seq.modules.decoders import LuongDecoder

    class Shifted(LuongDecoder):
        def step_tokens(self, prev, embedding, state):  # type: ignore[no-untyped-def]
            return super().step_tokens(prev.roll(1), embedding, state)

    registry.register("decoder", "shifted")(Shifted)
    spec = {"hidden_size": 10, "dropout": 0.0}
    check_decoder({"type": "luong", **spec})
    with pytest.raises(AssertionError, match="step_tokens != step at step 0"):
        check_decoder({"type": "shifted", **spec})


@pytest.mark.parametrize("layout", ["plain", "shared"])
def test_decoder_check_runs_the_gate_table(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step_tokens check reaches the built-in decoders' gate table (decoding's path) on the
    plain layout and on beam search's shared one (2 beams, 6 rows): gates off by 1e-3 there fail."""
    from seq2seq.modules import rnn_step
    from seq2seq.testing import B

    real = rnn_step.token_gates
    rows = B if layout == "plain" else 2 * B

    def off_by_a_little(rnn: Any, embedding: Any, prev: torch.Tensor) -> torch.Tensor:
        gates = real(rnn, embedding, prev)
        return gates + 1e-3 if prev.numel() == rows else gates

    monkeypatch.setattr(rnn_step, "token_gates", off_by_a_little)
    with pytest.raises(AssertionError, match="step_tokens != step at step 0"):
        check_decoder({"type": "bahdanau", "hidden_size": 10, "dropout": 0.0})


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


@pytest.mark.parametrize("cls", [BahdanauAttention, LocationAttention])
def test_additive_weights_and_gradients_equal_the_tanh_form(cls: type) -> None:
    """The σ form (2 vᵀσ(2h)) gives tanh's weights and gradients, history term included."""
    att = cls(query_size=3, key_size=4, hidden_size=5)
    if cls is BahdanauAttention:
        att = cls(query_size=3, key_size=4, hidden_size=5, coverage=True)
    q = torch.randn(2, 3, requires_grad=True)
    memory = torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    previous = torch.softmax(torch.randn(2, 6), -1) * mask
    history = AlignmentHistory(previous, previous * 2, 2)
    _, weights = att(q, att.prepare(memory), memory, mask, history)
    (weights * torch.arange(6.0)).sum().backward()
    got = q.grad.clone()
    q.grad = None
    extra = att.history_term(history)
    hidden = att.query_proj(q)[:, None] + memory @ att.key_proj.weight.T + extra
    raw = torch.tanh(hidden) @ att.energy.weight[0]
    expected = torch.softmax(raw.masked_fill(~mask, float("-inf")), -1)
    (expected * torch.arange(6.0)).sum().backward()
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(got, q.grad, atol=1e-6)


def test_multihead_additive_weights_and_gradients_equal_the_tanh_form() -> None:
    """Each head's σ-form score gives the weights and gradients of vᵀ tanh(W q + U k)."""
    att = MultiHeadAttention(query_size=3, key_size=4, heads=2, hidden_size=6, score="additive")
    q = torch.randn(2, 5, 3, requires_grad=True)
    memory = torch.randn(2, 7, 4)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    _, _, heads = att.attend_heads(q, att.prepare(memory), memory, mask)
    (heads * torch.arange(7.0)).sum().backward()
    got = q.grad.clone()
    q.grad = None
    query = att.query_proj(q).view(2, 5, 1, 2, 3)
    keys = (memory @ att.key_proj.weight.T).view(2, 1, 7, 2, 3)
    raw = (torch.tanh(query + keys) * att.energy).sum(-1).permute(0, 1, 3, 2)  # (B, T, n, S)
    expected = torch.softmax(raw.masked_fill(~mask[:, None, None], float("-inf")), -1)
    (expected * torch.arange(7.0)).sum().backward()
    assert torch.allclose(heads, expected, atol=1e-6)
    assert torch.allclose(got, q.grad, atol=1e-6)


@pytest.mark.parametrize(
    "name", [*ATTENTIONS, {"type": "bahdanau", "coverage": True}, {"type": "local", "mode": "m"}]
)
def test_every_attention_in_a_luong_decoder(name: object) -> None:
    """Each attention type works inside a decoder (stepwise and, where allowed, in parallel)."""
    size = M if name == "dot" else 10
    check_decoder(
        {"type": "luong", "hidden_size": size, "dropout": 0.0, "input_feeding": False}, name
    )


def test_none_attention_builds_an_attention_free_decoder() -> None:
    """'none' is the same as attention: null."""
    check_decoder({"type": "luong", "hidden_size": 10, "dropout": 0.0}, "none")


def test_coverage_changes_scores_with_history() -> None:
    """With coverage, attending twice to the same positions is discouraged or encouraged:
    the weights depend on the coverage vector, and not without it."""
    from seq2seq.modules.protocols import AlignmentHistory

    torch.manual_seed(0)
    plain = registry.build("attention", "bahdanau", where="a", query_size=4, key_size=6)
    covered = registry.build(
        "attention", {"type": "bahdanau", "coverage": True}, where="a", query_size=4, key_size=6
    )
    covered.load_state_dict(plain.state_dict(), strict=False)
    torch.nn.init.constant_(covered.coverage_proj.weight, 1.0)
    q, memory, mask = torch.randn(1, 4), torch.randn(1, 5, 6), torch.ones(1, 5, dtype=torch.bool)
    zero = AlignmentHistory(torch.zeros(1, 5), torch.zeros(1, 5), 0)
    some = AlignmentHistory(torch.zeros(1, 5), torch.tensor([[3.0, 0, 0, 0, 0]]), 1)
    _, w_plain = plain(q, plain.prepare(memory), memory, mask)
    _, w_zero = covered(q, covered.prepare(memory), memory, mask, zero)
    _, w_some = covered(q, covered.prepare(memory), memory, mask, some)
    assert torch.allclose(w_plain, w_zero, atol=1e-6)
    assert not torch.allclose(w_zero, w_some)


def test_local_m_window_follows_the_step() -> None:
    """local-m puts all weight within `window` of position t."""
    from seq2seq.modules.protocols import AlignmentHistory

    att = registry.build(
        "attention",
        {"type": "local", "mode": "m", "window": 1},
        where="a",
        query_size=4,
        key_size=4,
    )
    memory, mask = torch.randn(1, 9, 4), torch.ones(1, 9, dtype=torch.bool)
    history = AlignmentHistory(torch.zeros(1, 9), torch.zeros(1, 9), 5)
    _, weights = att(torch.randn(1, 4), att.prepare(memory), memory, mask, history)
    assert torch.all(weights[0, :4] == 0) and torch.all(weights[0, 7:] == 0)
    assert weights[0, 4:7].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_location_attention_uses_previous_alignment() -> None:
    """Location-aware weights change when only the previous alignment changes."""
    from seq2seq.modules.protocols import AlignmentHistory

    torch.manual_seed(0)
    att = registry.build(
        "attention", {"type": "location", "kernel_size": 3}, where="a", query_size=4, key_size=6
    )
    q, memory, mask = torch.randn(1, 4), torch.randn(1, 5, 6), torch.ones(1, 5, dtype=torch.bool)
    first = AlignmentHistory(torch.tensor([[1.0, 0, 0, 0, 0]]), torch.zeros(1, 5), 1)
    second = AlignmentHistory(torch.tensor([[0, 0, 0, 0, 1.0]]), torch.zeros(1, 5), 1)
    keys = att.prepare(memory)
    assert not torch.allclose(
        att(q, keys, memory, mask, first)[1], att(q, keys, memory, mask, second)[1]
    )
