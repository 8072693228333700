"""Beam search and sampling: agreement with greedy and with brute force, penalties, n-best."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.assemble import build_model
from seq2seq.data.batching import make_batch
from seq2seq.model import Seq2Seq
from seq2seq.recipe import ModelConfig
from seq2seq.search.beam import BeamSearch
from seq2seq.search.constraints import block_repeats
from seq2seq.search.greedy import GreedySearch
from seq2seq.search.hypotheses import coverage_penalty, length_penalty
from seq2seq.search.sample import SampleSearch, filter_logits

V = 7  # <pad> <unk> <s> </s> and three real tokens (1 = <unk> can be output too)


def tiny_model(seed: int, vocab: int = V) -> Seq2Seq:
    """A random GRU model with attention; sharp enough that beams differ from greedy."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        init_scale=None,  # fan-in init: wider weights give varied output lengths
        encoder={"type": "gru", "hidden_size": 4},
        attention="bahdanau",
        decoder={"type": "luong", "hidden_size": 8, "dropout": 0.0, "input_feeding": True},
    )
    model = build_model(cfg, vocab, vocab).eval()
    with torch.no_grad():
        model.generator.weight.mul_(6.0)  # peakier distributions
    return model


def sources(count: int = 4) -> object:
    seqs = [[4, 5, 6, 3], [5, 3], [6, 6, 4, 5, 4, 3], [4, 3]][:count]
    return make_batch(seqs, None, list(range(len(seqs))))


@torch.no_grad()
def brute_force(model: Seq2Seq, src: list[int], max_length: int, alpha: float, norm: str):
    """Every output of up to max_length pieces (then </s>), scored like beam search."""
    real = [t for t in range(1, V) if t not in (0, 2, 3)]
    best = (-math.inf, None)
    batch = make_batch([src], None, [0])
    for n in range(max_length + 1):
        for seq in itertools.product(real, repeat=n):
            state = model.encode(batch.src, batch.src_lengths)
            total, prev = 0.0, 2
            for token in [*seq, 3]:
                log_probs, state = model.step(torch.tensor([prev]), state)
                total += float(log_probs[0, token])
                prev = token
            score = total / float(length_penalty(n + 1, alpha, norm))
            if score > best[0]:
                best = (score, list(seq))
    return best


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    alpha=st.sampled_from([0.0, 0.6, 1.0]),
    norm=st.sampled_from(["gnmt", "average"]),
)
def test_wide_beam_finds_the_brute_force_optimum(seed: int, alpha: float, norm: str) -> None:
    """With a beam wide enough to hold every hypothesis, beam search returns the best output."""
    model = tiny_model(seed)
    src = [4, 5, 6, 3]
    score, seq = brute_force(model, src, max_length=3, alpha=alpha, norm=norm)
    search = BeamSearch(
        beam_size=40,
        max_length=3,
        max_ratio=None,
        length_penalty=alpha,
        length_norm=norm,
        stop="exact",
    )
    (hyps,) = search(model, make_batch([src], None, [0]))
    assert hyps[0].tokens == seq
    assert hyps[0].score == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_beam_of_one_is_greedy(seed: int) -> None:
    """beam_size 1 without a length penalty gives exactly greedy's tokens and scores."""
    model = tiny_model(seed)
    greedy = GreedySearch(max_length=12)(model, sources())
    beam = BeamSearch(beam_size=1, length_penalty=0.0, max_length=12)(model, sources())
    for g, b in zip(greedy, beam, strict=True):
        assert b[0].tokens == g[0].tokens
        assert b[0].score == pytest.approx(g[0].score, abs=1e-5)


@pytest.mark.parametrize("stop", ["exact", "first_k"])
def test_batch_equals_one_by_one(stop: str) -> None:
    """Decoding a batch gives each sentence's result alone (finished sentences leave early)."""
    model = tiny_model(3)
    search = BeamSearch(beam_size=4, n_best=3, max_length=10, stop=stop)
    batch_result = search(model, sources())
    srcs = [[4, 5, 6, 3], [5, 3], [6, 6, 4, 5, 4, 3], [4, 3]]
    for src, together in zip(srcs, batch_result, strict=True):
        (alone,) = search(model, make_batch([src], None, [0]))
        assert [h.tokens for h in alone] == [h.tokens for h in together]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together], abs=1e-5)


def test_nbest_sorted_and_distinct() -> None:
    """N-best lists are ordered by final score and hold no duplicate outputs."""
    model = tiny_model(7)
    for hyps in BeamSearch(beam_size=6, n_best=6, max_length=8)(model, sources()):
        assert len(hyps) == 6
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)


def test_exact_stopping_never_worse_than_first_k() -> None:
    """The exact rule keeps searching until nothing can beat the best; first-K may stop early."""
    model = tiny_model(11)
    exact = BeamSearch(beam_size=3, max_length=10, length_penalty=1.0, stop="exact")(
        model, sources()
    )
    fast = BeamSearch(beam_size=3, max_length=10, length_penalty=1.0)(model, sources())
    for e, f in zip(exact, fast, strict=True):
        assert e[0].score >= f[0].score - 1e-6


def test_first_k_decodes_fewer_rows_than_exact() -> None:
    """The default rule ends a sentence once beam_size outputs have finished: fewer decoder
    rows than the exact rule, which keeps going while a longer output could still win."""
    model = tiny_model(11)
    rows = {}
    for stop in ("exact", "first_k"):
        counted = CountingModel(model)
        BeamSearch(beam_size=3, max_length=20, length_penalty=1.0, stop=stop)(counted, sources())
        rows[stop] = counted.rows
    assert rows["first_k"] < rows["exact"]


class CountingModel:
    """A model wrapper that counts the rows its decoder steps."""

    def __init__(self, model: Seq2Seq) -> None:
        self.model, self.rows = model, 0
        self.specials = model.specials
        self.encode = model.encode

    def step(self, prev: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        """One decoder step of the wrapped model, counted."""
        self.rows += prev.numel()
        return self.model.step(prev, state)


def test_length_penalty_direction() -> None:
    """A larger α divides long outputs' (negative) sums by more: it favours longer outputs."""
    short_sum, long_sum = -2.0, -3.0  # 2 tokens vs 6 tokens
    for norm in ("gnmt", "average"):
        plain = [
            s / float(length_penalty(n, 0.0, norm)) for s, n in ((short_sum, 2), (long_sum, 6))
        ]
        normed = [
            s / float(length_penalty(n, 1.0, norm)) for s, n in ((short_sum, 2), (long_sum, 6))
        ]
        assert plain[0] > plain[1]  # without normalisation the short one wins
        assert normed[1] > normed[0]  # with it the long one does
    model = tiny_model(5)
    lengths = []
    for alpha in (0.0, 2.0):
        hyps = BeamSearch(beam_size=5, max_length=10, length_penalty=alpha)(model, sources())
        lengths.append(sum(len(h[0].tokens) for h in hyps))
    assert lengths[1] >= lengths[0]


def test_coverage_penalty_direction() -> None:
    """GNMT's coverage penalty punishes source words left unattended, and ignores padding."""
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)
    coverage = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.0, 0.1, 0.9, 0.0]])
    full, partial = coverage_penalty(coverage, mask, beta=0.5).tolist()
    assert full == 0.0
    assert partial < 0.0


def test_min_length_and_no_repeat() -> None:
    """min_length keeps </s> away; no_repeat_ngram keeps every bigram unique."""
    model = tiny_model(2)
    for hyps in BeamSearch(beam_size=3, min_length=5, max_length=12, no_repeat_ngram=2)(
        model, sources()
    ):
        tokens = hyps[0].tokens
        assert len(tokens) >= 5
        bigrams = list(itertools.pairwise(tokens))
        assert len(bigrams) == len(set(bigrams))


def test_block_repeats_bans_the_completing_token() -> None:
    """After 'a b ... a', the token b is banned for n = 2."""
    history = torch.tensor([[4, 5, 6, 4]])
    banned = block_repeats(torch.zeros(1, 8), history, 2)
    assert banned[0, 5] == -math.inf
    assert torch.isfinite(banned[0, [4, 6, 7]]).all()


def test_sampling_is_seeded_and_top_k_one_is_greedy() -> None:
    """The same seed draws the same outputs; top_k 1 always takes the argmax."""
    model = tiny_model(4)
    a = SampleSearch(seed=1, num_samples=3, max_length=10)(model, sources())
    b = SampleSearch(seed=1, num_samples=3, max_length=10)(model, sources())
    assert [[h.tokens for h in s] for s in a] == [[h.tokens for h in s] for s in b]
    greedy = GreedySearch(max_length=10)(model, sources())
    top1 = SampleSearch(top_k=1, seed=5, max_length=10)(model, sources())
    assert [h[0].tokens for h in top1] == [g[0].tokens for g in greedy]


def test_filter_logits_top_p_keeps_the_nucleus() -> None:
    """top_p keeps the most likely tokens until their mass reaches p."""
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = torch.isfinite(filter_logits(log_probs, 1.0, 0, 0.7))[0].tolist()
    assert kept == [True, True, False, False]
    kept_k = torch.isfinite(filter_logits(log_probs, 1.0, 3, 1.0))[0].tolist()
    assert kept_k == [True, True, True, False]


def test_greedy_batch_with_finished_rows_leaving_equals_each_sentence_alone() -> None:
    """Rows that end leave the greedy batch; every sentence still gets its own output, score
    and attention (outputs of different lengths, so rows leave at different steps)."""
    model, batch = tiny_model(5), sources()
    search = GreedySearch(max_length=8)
    together = search(model, batch, keep_attention=True)
    assert len({len(h[0].tokens) for h in together}) > 1
    for row, hyps in enumerate(together):
        alone = search(
            model,
            make_batch(batch.src[row : row + 1, : int(batch.src_lengths[row])].tolist(), None, [0]),
            keep_attention=True,
        )[0][0]
        assert hyps[0].tokens == alone.tokens
        assert hyps[0].score == pytest.approx(alone.score, abs=1e-5)
        assert torch.allclose(hyps[0].attention, alone.attention, atol=1e-6)
