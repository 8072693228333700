"""Beam search's state layout: memory held once per sentence (`DecoderState.beams`) and beams
reordered without moving it give the n-best lists of copying every tensor for every hypothesis."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from seq2seq.assemble import build_model
from seq2seq.data.batching import make_batch
from seq2seq.model import Seq2Seq
from seq2seq.modules.protocols import DecoderState
from seq2seq.recipe import ModelConfig
from seq2seq.search.beam import BeamSearch

V = 9
SOURCES = [[4, 5, 6, 3], [5, 3], [6, 6, 4, 5, 4, 3], [4, 3], [7, 8, 5, 3]]

# decoder, attention, cell, input feeding, copy, and a seed whose best outputs have several
# lengths: every path of DecoderState and attend_with_heads
ARCHITECTURES: dict[str, tuple[str, Any, str, bool, bool, int]] = {
    "luong-bahdanau-feed": ("luong", "bahdanau", "gru", True, False, 0),
    "luong-general-lstm": ("luong", "general", "lstm", False, False, 1),
    "luong-dot": ("luong", "dot", "gru", False, False, 1),
    "luong-multihead": ("luong", {"type": "multihead", "heads": 2}, "gru", True, False, 2),
    "luong-local-p": ("luong", {"type": "local", "mode": "p", "window": 1}, "gru", False, False, 0),
    "bahdanau-concat": ("bahdanau", "concat", "gru", False, False, 10),
    "bahdanau-copy": ("bahdanau", "bahdanau", "lstm", False, True, 1),
    "luong-location": ("luong", "location", "gru", True, False, 2),  # history: not shared
}


def model_for(name: str) -> Seq2Seq:
    """A small random model whose beams differ from greedy."""
    decoder, attention, cell, feeding, copy, seed = ARCHITECTURES[name]
    torch.manual_seed(seed)
    spec: dict[str, Any] = {"type": decoder, "hidden_size": 8, "dropout": 0.0, "cell": cell}
    if decoder == "luong":
        spec["input_feeding"] = feeding
    cfg = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        init_scale=None,
        encoder={"type": "gru", "hidden_size": 4},
        attention=attention,
        decoder=spec,  # type: ignore[arg-type]
        copy=copy,
        share_embeddings=copy,
    )
    model = build_model(cfg, V, V).eval()
    with torch.no_grad():
        model.generator.weight.mul_(6.0)  # peakier distributions
    return model


def every_tensor_copied(state: DecoderState, index: torch.Tensor) -> DecoderState:
    """reorder_beams as it was first written: every tensor, memory and keys included."""
    moved = ORIGINAL_REORDER(state, index)
    moved.memory, moved.mask = state.memory[index], state.mask[index]
    moved.keys = None if state.keys is None else state.keys[index]
    return moved


ORIGINAL_REORDER = DecoderState.reorder_beams


def assert_same_nbest(mine: list, theirs: list) -> None:
    """Equal tokens; scores, attention and head maps equal to float rounding."""
    assert [[h.tokens for h in n] for n in mine] == [[h.tokens for h in n] for n in theirs]
    for a, b in zip(itertools.chain(*mine), itertools.chain(*theirs), strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert torch.allclose(a.attention, b.attention, atol=1e-6)
        if b.head_attention is not None:
            assert torch.allclose(a.head_attention, b.head_attention, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_memory_once_per_sentence_gives_the_nbest_of_copying_it_per_hypothesis(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared memory (the default where the decoder allows it) against memory copied for every
    hypothesis and every tensor reordered at every step; sentences finish at different steps,
    so the batch shrinks under both layouts."""
    model = model_for(name)
    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    search = BeamSearch(beam_size=3, n_best=3, max_length=7, coverage_penalty=0.2, stop="exact")
    assert model.shares_source == (name != "luong-location")
    expanded: list[int] = []
    expand = DecoderState.expand_beams
    monkeypatch.setattr(
        DecoderState, "expand_beams", lambda s, k: expanded.append(k) or expand(s, k)
    )
    shared = search(model, batch, keep_attention=True)
    assert expanded == ([3] if model.shares_source else [])  # the layout the search took
    assert len({len(n[0].tokens) for n in shared}) > 1, "every sentence ends at the same step"
    monkeypatch.setattr(Seq2Seq, "shares_source", property(lambda self: False))
    monkeypatch.setattr(DecoderState, "reorder_beams", every_tensor_copied)
    copied = search(model, batch, keep_attention=True)
    assert_same_nbest(shared, copied)


def test_expanded_state_selects_sentences_with_all_their_beams() -> None:
    """select() on a state with beams picks source rows and the hypotheses of those rows."""
    model = model_for("luong-multihead")
    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    state = model.encode(batch.src, batch.src_lengths).expand_beams(3)
    assert state.beams == 3 and state.memory.size(0) == len(SOURCES)
    assert state.hidden.size(1) == 3 * len(SOURCES)  # type: ignore[union-attr]
    _, state = model.step(torch.full((3 * len(SOURCES),), 2), state)
    picked = state.select(torch.tensor([4, 1]))
    rows = torch.tensor([12, 13, 14, 3, 4, 5])
    assert torch.equal(picked.memory, state.memory[[4, 1]])
    assert torch.equal(picked.hidden, state.hidden[:, rows])  # type: ignore[index]
    assert torch.equal(picked.weights, state.weights[rows])  # type: ignore[index]
    assert torch.equal(picked.head_weights, state.head_weights[rows])  # type: ignore[index]
    assert torch.equal(picked.source_mask(2), state.mask[4])
    assert torch.equal(picked.source_mask(3), state.mask[1])
    assert picked.history().previous.shape == (6, state.mask.size(1))


def test_a_step_on_shared_memory_equals_the_step_on_copies() -> None:
    """One decoder step, input feeding and multi-head attention: per-hypothesis outputs and
    attention are those of the same hypotheses with the memory copied to each."""
    model = model_for("luong-multihead")
    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    encoded = model.encode(batch.src, batch.src_lengths)
    prev = torch.randint(4, V, (2 * len(SOURCES),))
    shared_probs, shared = model.step(prev, encoded.expand_beams(2))
    rows = torch.arange(len(SOURCES)).repeat_interleave(2)
    copied_probs, copied = model.step(prev, encoded.select(rows))
    assert torch.allclose(shared_probs, copied_probs, atol=1e-6)
    assert torch.allclose(shared.weights, copied.weights, atol=1e-6)  # type: ignore[arg-type]
    assert torch.allclose(shared.feed, copied.feed, atol=1e-6)  # type: ignore[arg-type]


def test_an_ensemble_shares_memory_only_when_every_member_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ensemble of sharing members decodes as with copies; one member with a history
    (location attention) turns sharing off for all."""
    from seq2seq.ensemble import Ensemble

    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    search = BeamSearch(beam_size=3, n_best=2, max_length=7, coverage_penalty=0.2, stop="exact")
    pair = Ensemble([model_for("luong-bahdanau-feed"), model_for("luong-multihead")]).eval()
    assert pair.shares_source
    assert not Ensemble([model_for("luong-dot"), model_for("luong-location")]).shares_source
    shared = search(pair, batch, keep_attention=True)
    monkeypatch.setattr(Seq2Seq, "shares_source", property(lambda self: False))
    assert not pair.shares_source
    assert_same_nbest(shared, search(pair, batch, keep_attention=True))
