"""Contract checks for components, reusable by plugin packages in their own tests.

Each `check_*` builds the component through the registry with tiny sizes and raises
AssertionError with a clear message when the component breaks the interface in
`seq2seq.modules.protocols`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seq2seq.modules.protocols import (
    AlignmentHistory,
    DecoderState,
    EncoderOutput,
    needs_history,
)
from seq2seq.registry import build, split_spec

B, S, E, M, H = 3, 5, 8, 12, 10


def _memory() -> tuple[Tensor, Tensor]:
    memory = torch.randn(B, S, M, requires_grad=True)
    lengths = torch.tensor([S, 3, 1])
    mask = torch.arange(S)[None, :] < lengths[:, None]
    return memory, mask


def check_attention(spec: Any, query_size: int = H, key_size: int = M) -> None:
    """Shapes, exact zeros on padding, weights summing to one, gradients to every parameter."""
    torch.manual_seed(0)
    attention = build(
        "attention", spec, where="attention", query_size=query_size, key_size=key_size
    )
    memory, mask = _memory()
    if key_size != M:
        memory = torch.randn(B, S, key_size, requires_grad=True)
    query = torch.randn(B, query_size, requires_grad=True)
    keys = attention.prepare(memory)
    history = None
    if needs_history(attention):  # a previous alignment that is not uniform, and a position
        previous = torch.softmax(torch.randn(B, S), -1) * mask
        history = AlignmentHistory(previous, previous * 2.0, position=1)
    extra = () if history is None else (history,)  # history-free attention takes 4 arguments
    context, weights = attention(query, keys, memory, mask, *extra)
    assert context.shape == (B, key_size), f"context shape {tuple(context.shape)}"
    assert weights.shape == (B, S), f"weights shape {tuple(weights.shape)}"
    assert torch.all(weights[~mask] == 0), "padded positions must get exactly zero weight"
    sums = weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5), f"weights sum to {sums}"
    if history is None:  # only history-free attention takes a whole sequence of queries
        steps = torch.randn(B, 4, query_size)
        ctx_seq, w_seq = attention(steps, keys, memory, mask)
        assert ctx_seq.shape == (B, 4, key_size), "(B, T, H) queries give (B, T, M) contexts"
        assert w_seq.shape == (B, 4, S), "(B, T, H) queries give (B, T, S) weights"
        single, _ = attention(steps[:, 2], keys, memory, mask)
        assert torch.allclose(single, ctx_seq[:, 2], atol=1e-5), "sequence and step queries differ"
    (context.sum() + weights.pow(2).sum()).backward()
    for name, param in attention.named_parameters():
        assert param.grad is not None and torch.any(param.grad != 0), f"no gradient to {name}"
    assert query.grad is not None and memory.grad is not None, "no gradient to query or memory"


def check_encoder(spec: Any, input_size: int = E) -> None:
    """Output shapes, mask, padding invariance and gradients."""
    torch.manual_seed(0)
    encoder = build("encoder", spec, where="encoder", input_size=input_size)
    encoder.eval()
    embedded = torch.randn(B, S, input_size, requires_grad=True)
    lengths = torch.tensor([S, 3, 1])
    out = encoder(embedded, lengths)
    assert isinstance(out, EncoderOutput), "encoders return EncoderOutput"
    M_out = encoder.output_size
    assert out.states.shape == (B, S, M_out), f"states shape {tuple(out.states.shape)}"
    assert out.final.dim() == 3 and out.final.shape[1:] == (B, M_out), "final is (L, B, M)"
    assert out.mask.tolist() == (torch.arange(S)[None] < lengths[:, None]).tolist(), "mask"
    assert torch.all(out.states[1, 3:] == 0), "states past a sentence's length must be zero"
    alone = encoder(embedded[1:2, :3], lengths[1:2])
    assert torch.allclose(alone.states[0], out.states[1, :3], atol=1e-5), "padding leaks in"
    out.states.sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None, f"no gradient to {name}"


def check_decoder(spec: Any, attention: Any = "bahdanau", input_size: int = E) -> None:
    """Step shapes, state reordering, batch-of-one equals a row, parallel path equals steps,
    `step_tokens` (where there is one) equals `step`."""
    from functools import partial

    torch.manual_seed(0)
    make = (
        None
        if attention is None
        else partial(build, "attention", attention, where="attention", key_size=M)
    )
    decoder = build(
        "decoder", spec, where="decoder", input_size=input_size, memory_size=M, make_attention=make
    )
    decoder.eval()
    memory, mask = _memory()
    encoded = EncoderOutput(memory, torch.randn(1, B, M), mask)
    state = decoder.init_state(encoded)
    assert isinstance(state, DecoderState), "init_state returns DecoderState"
    steps = torch.randn(B, 4, input_size)
    outs = []
    s = state
    for t in range(4):
        out, s = decoder.step(steps[:, t], s)
        assert out.shape == (B, decoder.hidden_size), f"step output {tuple(out.shape)}"
        outs.append(out)
    stepped = torch.stack(outs, 1)
    parallel = getattr(decoder, "forward_sequence", None)
    whole = parallel(steps, state) if parallel is not None else None
    if whole is not None:
        assert torch.allclose(whole.features, stepped, atol=1e-5), "forward_sequence != step"
    if attention is not None and split_spec(attention)[0] != "none":
        assert s.weights is not None and s.weights.shape == (B, S), "step leaves (B, S) weights"
        assert s.context is not None and s.context.shape == (B, M), "step leaves (B, M) context"
        assert s.position == 4, "step advances position"
    index = torch.tensor([2, 0, 0])
    picked = state.select(index)
    out_picked, _ = decoder.step(steps[index, 0], picked)
    assert torch.allclose(out_picked, outs[0][index], atol=1e-5), "select() does not reorder"
    if getattr(decoder, "shares_source", False):  # beam search's layout: memory once per row
        rows = torch.arange(B).repeat_interleave(2)
        out_beams, _ = decoder.step(steps[rows, 0], state.expand_beams(2))
        assert torch.allclose(out_beams, outs[0][rows], atol=1e-5), "shares_source: step differs"
    one = decoder.init_state(EncoderOutput(memory[1:2], encoded.final[:, 1:2], mask[1:2]))
    out_one, _ = decoder.step(steps[1:2, 0], one)
    assert torch.allclose(out_one, outs[0][1:2], atol=1e-5), "batch of one differs from its row"
    if getattr(decoder, "step_tokens", None) is not None:
        _check_step_tokens(decoder, state, input_size)
    stepped.sum().backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None, f"no gradient to {name}"


def _check_step_tokens(decoder: Any, state: DecoderState, input_size: int) -> None:
    """The optional `step_tokens(prev, embedding, state)` equals `step(embedding(prev), state)`,
    over three steps in decoding's no-grad mode, where shortcuts (a gate table) may run; also on
    beam search's shared layout where the decoder takes it."""
    embedding = torch.nn.Embedding(11, input_size)
    starts = [state]
    if getattr(decoder, "shares_source", False):
        starts.append(state.expand_beams(2))
    with torch.no_grad():
        if hasattr(decoder, "prepare_tokens"):
            decoder.prepare_tokens(embedding)
        for start in starts:
            tokens = torch.randint(11, (3, start.mask.size(0) * start.beams))
            plain, by_tokens = start, start
            for t in range(3):
                want, plain = decoder.step(embedding(tokens[t]), plain)
                got, by_tokens = decoder.step_tokens(tokens[t], embedding, by_tokens)
                assert got.shape == want.shape, f"step_tokens output {tuple(got.shape)}"
                assert torch.allclose(got, want, atol=1e-5), f"step_tokens != step at step {t}"
