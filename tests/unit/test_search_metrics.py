"""Greedy search on a scripted model, and the metric wrappers."""

from __future__ import annotations

import pytest
import sacrebleu
import torch
from torch import Tensor, nn

from seq2seq.data.batching import make_batch
from seq2seq.metrics.score import score_all
from seq2seq.model import Specials
from seq2seq.modules.protocols import DecoderState
from seq2seq.registry import RecipeError, build
from seq2seq.search.greedy import GreedySearch


class Scripted(nn.Module):
    """A fake model whose next-token distribution depends only on the step number."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = torch.log_softmax(torch.tensor(table, dtype=torch.float), -1)  # (steps, V)
        self.specials = Specials()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        B = src.size(0)
        zeros = torch.zeros(B, 1)
        return DecoderState(
            torch.zeros(1, B, 1),
            zeros[..., None],
            zeros.bool(),
            extra={"t": torch.zeros(B, dtype=torch.long)},
        )

    def step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        t = state.extra["t"]
        log_probs = self.table[t.clamp(max=len(self.table) - 1)]
        return log_probs, DecoderState(state.hidden, state.memory, state.mask, extra={"t": t + 1})


def _batch(n: int = 2) -> object:
    return make_batch([[5, 3]] * n, None, list(range(n)))


def test_greedy_takes_argmax_until_eos() -> None:
    """Tokens are the per-step argmax; the score sums their log-probabilities."""
    V = 6
    table = [[0, 0, 0, 0, 5, 1], [0, 0, 0, 0, 1, 5], [0, 0, 0, 9, 0, 0]]
    model = Scripted([row[:V] for row in table])
    hyps = GreedySearch(max_length=10, max_ratio=None)(model, _batch())
    assert [h[0].tokens for h in hyps] == [[4, 5], [4, 5]]
    expected = sum(float(model.table[i, tok]) for i, tok in enumerate([4, 5, 3]))
    assert hyps[0][0].score == pytest.approx(expected, abs=1e-5)


def test_greedy_forces_end_at_length_limit() -> None:
    """A model that never says </s> stops at max_length."""
    model = Scripted([[0, 0, 0, 0, 5, 0]])
    hyps = GreedySearch(max_length=4, max_ratio=None)(model, _batch(1))
    assert hyps[0][0].tokens == [4, 4, 4, 4]  # max_length pieces, then the forced </s>


def test_greedy_ratio_limit_uses_source_length() -> None:
    """max_ratio caps the output at ratio × source length + 5."""
    model = Scripted([[0, 0, 0, 0, 5, 0]])
    hyps = GreedySearch(max_length=100, max_ratio=1.0)(model, _batch(1))
    assert len(hyps[0][0].tokens) == 2 + 5


def test_bleu_matches_sacrebleu_and_keeps_signature() -> None:
    """Our BLEU is sacrebleu's corpus BLEU, signature included."""
    hyps = ["the cat sat on the mat", "a dog barks"]
    refs = ["the cat sat on a mat", "the dog barks"]
    bleu, chrf = score_all(["bleu", "chrf"], hyps, refs)
    assert bleu.value == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in bleu.signature and "nrefs:1" in bleu.signature
    assert chrf.value == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)


def test_rouge_uses_stemming() -> None:
    """ROUGE with stemming counts 'cats' and 'cat' as a match; the signature says so."""
    (score,) = score_all(["rouge1"], ["cats running"], ["cat runs"])
    assert score.value == pytest.approx(100.0)
    assert "stemming:on" in score.signature
    (plain,) = score_all([{"type": "rouge1", "stemming": False}], ["cats running"], ["cat runs"])
    assert plain.value == 0.0


def test_ter_is_lower_better() -> None:
    """TER declares its direction."""
    metric = build("metric", "ter", where="metrics[0]")
    assert metric.higher_is_better is False
    assert metric(["a b c"], ["a b c"]).value == 0.0


def test_scoring_misaligned_or_unknown() -> None:
    """Different counts and unknown metric names are clear errors."""
    with pytest.raises(Exception, match="2 hypotheses but 1 references"):
        score_all(["bleu"], ["a", "b"], ["a"])
    with pytest.raises(RecipeError, match="Did you mean 'bleu'"):
        score_all(["bleuu"], ["a"], ["a"])
