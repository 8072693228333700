"""Attention kept by greedy and beam search for every attention type, per head for multi-head,
and drawn as one panel per head."""

from __future__ import annotations

import pytest
import torch

from seq2seq import registry
from seq2seq.assemble import build_model
from seq2seq.data.batching import make_batch
from seq2seq.model import Seq2Seq
from seq2seq.modules.protocols import HEAD_WEIGHTS
from seq2seq.plots.attention import attention_figure
from seq2seq.recipe import ModelConfig
from seq2seq.search.beam import BeamSearch
from seq2seq.search.greedy import GreedySearch

ATTENTIONS = [
    n
    for n, origin in registry.names("attention").items()
    if origin == registry.BUILTIN and n != "none"
]
SOURCES = [[4, 5, 6, 3], [5, 3], [6, 6, 4, 5, 4, 3]]


def _model(attention: object, decoder: str = "luong") -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        encoder={"type": "gru", "hidden_size": 4},
        attention=attention,
        decoder={"type": decoder, "hidden_size": 8, "dropout": 0.0},
    )
    return build_model(cfg, 9, 9).eval()


@pytest.mark.parametrize("search", [GreedySearch(max_length=6), BeamSearch(3, max_length=6)])
@pytest.mark.parametrize("name", ATTENTIONS)
def test_every_attention_type_gives_a_map_of_the_right_shape(name: str, search: object) -> None:
    """(T, S) weights per hypothesis, rows summing to one; per-head maps only for multihead."""
    spec = {"type": "multihead", "heads": 2} if name == "multihead" else name
    model = _model(spec)
    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    results = search(model, batch, keep_attention=True)  # type: ignore[operator]
    for src, hyps in zip(SOURCES, results, strict=True):
        best = hyps[0]
        assert best.attention is not None
        assert best.attention.shape == (len(best.tokens) + 1, len(src))
        assert torch.allclose(best.attention.sum(-1), torch.ones(len(best.tokens) + 1), atol=1e-5)
        if name == "multihead":
            assert best.head_attention is not None
            assert best.head_attention.shape == (2, *best.attention.shape)
            assert torch.allclose(best.head_attention.mean(0), best.attention, atol=1e-6)
        else:
            assert best.head_attention is None
        figure = attention_figure(
            [str(t) for t in src],
            [*map(str, best.tokens), "</s>"],
            best.attention,
            best.head_attention,
        )
        panels = [axes for axes in figure.axes if axes.images]
        assert len(panels) == (2 if name == "multihead" else 1)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_both_decoders_keep_per_head_weights_in_the_state(decoder: str) -> None:
    """The step's (B, n, S) head weights ride in state.extra and follow beam reordering."""
    model = _model({"type": "multihead", "heads": 4}, decoder)
    batch = make_batch(SOURCES, None, [0, 1, 2])
    state = model.encode(batch.src, batch.src_lengths)
    _, state = model.step(torch.full((3,), 2), state)
    heads = state.extra[HEAD_WEIGHTS]
    assert heads.shape == (3, 4, batch.src.size(1))
    assert torch.allclose(heads.mean(1), state.weights)
    reordered = state.select(torch.tensor([2, 0]))
    assert torch.equal(reordered.head_weights, heads[[2, 0]])


def test_beam_keeps_the_head_weights_of_its_own_hypothesis() -> None:
    """Beam search with a beam of one is greedy: the same tokens and the same head maps."""
    model = _model({"type": "multihead", "heads": 2})
    batch = make_batch(SOURCES, None, [0, 1, 2])
    greedy = GreedySearch(max_length=6)(model, batch, keep_attention=True)
    beam = BeamSearch(1, length_penalty=0.0, max_length=6)(model, batch, keep_attention=True)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].head_attention is not None and b[0].head_attention is not None
        assert torch.allclose(g[0].head_attention, b[0].head_attention, atol=1e-6)


def test_without_keep_attention_nothing_is_kept() -> None:
    """The default decode keeps no weights (no cost when nobody draws)."""
    model = _model({"type": "multihead", "heads": 2})
    batch = make_batch(SOURCES, None, [0, 1, 2])
    for hyps in BeamSearch(2, max_length=4)(model, batch):
        assert hyps[0].attention is None and hyps[0].head_attention is None
