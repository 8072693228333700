"""BLEU, chrF and TER through sacrebleu, with its signature kept for reproducibility.

sacrebleu is imported when a metric is built: every command registers the metrics, and
`seq2seq translate` should not pay for scoring it does not do."""

from __future__ import annotations

from typing import Any, Literal

from seq2seq.metrics.score import Score
from seq2seq.registry import register


class SacreMetric:
    """Shared wrapper: corpus score of one reference per hypothesis."""

    name = ""
    higher_is_better = True
    metric: Any

    def __call__(self, hyps: list[str], refs: list[str]) -> Score:
        """Corpus-level score, scaled 0-100 as sacrebleu prints it."""
        result = self.metric.corpus_score(hyps, [refs])
        return Score(
            self.name, float(result.score), str(self.metric.get_signature()), self.higher_is_better
        )


@register("metric", "bleu")
class BleuMetric(SacreMetric):
    """Corpus BLEU (sacrebleu defaults: 13a tokenization, exponential smoothing)."""

    name = "bleu"

    def __init__(
        self,
        tokenize: Literal[
            "13a", "intl", "char", "none", "zh", "ja-mecab", "ko-mecab", "flores200"
        ] = "13a",
        lowercase: bool = False,
    ) -> None:
        from sacrebleu.metrics import BLEU

        self.metric = BLEU(tokenize=tokenize, lowercase=lowercase)


@register("metric", "chrf")
class ChrfMetric(SacreMetric):
    """chrF (character n-gram F-score); word_order 2 gives chrF++."""

    name = "chrf"

    def __init__(self, word_order: int = 0) -> None:
        from sacrebleu.metrics import CHRF

        self.metric = CHRF(word_order=word_order)
        if word_order:
            self.name = "chrf++"


@register("metric", "ter")
class TerMetric(SacreMetric):
    """Translation edit rate; lower is better."""

    name = "ter"
    higher_is_better = False

    def __init__(self) -> None:
        from sacrebleu.metrics import TER

        self.metric = TER()
