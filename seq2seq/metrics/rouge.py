"""ROUGE-1/2/L/Lsum through rouge-score: mean F-measure × 100, Porter stemming on."""

from __future__ import annotations

from seq2seq.metrics.score import Score
from seq2seq.registry import register


class RougeMetric:
    """Shared wrapper over `rouge_score.rouge_scorer.RougeScorer` for one ROUGE variant."""

    variant = ""
    higher_is_better = True

    def __init__(self, stemming: bool = True) -> None:
        from rouge_score import rouge_scorer  # here: importing it (and nltk) costs 0.2 s

        self.stemming = stemming
        self.scorer = rouge_scorer.RougeScorer([self.variant], use_stemmer=stemming)

    def __call__(self, hyps: list[str], refs: list[str]) -> Score:
        """Mean F-measure over the pairs, 0-100."""
        if self.variant == "rougeLsum":  # Lsum splits summaries into sentences at newlines
            hyps = [h.replace(" . ", " .\n") for h in hyps]
            refs = [r.replace(" . ", " .\n") for r in refs]
        total = sum(
            self.scorer.score(ref, hyp)[self.variant].fmeasure
            for hyp, ref in zip(hyps, refs, strict=True)
        )
        signature = f"rouge-score|{self.variant}|F1|stemming:{'on' if self.stemming else 'off'}"
        return Score(self.variant, 100.0 * total / max(1, len(hyps)), signature)


@register("metric", "rouge1")
class Rouge1Metric(RougeMetric):
    """ROUGE-1: unigram overlap."""

    variant = "rouge1"


@register("metric", "rouge2")
class Rouge2Metric(RougeMetric):
    """ROUGE-2: bigram overlap."""

    variant = "rouge2"


@register("metric", "rougeL")
class RougeLMetric(RougeMetric):
    """ROUGE-L: longest common subsequence."""

    variant = "rougeL"


@register("metric", "rougeLsum")
class RougeLsumMetric(RougeMetric):
    """ROUGE-Lsum: summary-level LCS over newline-separated sentences."""

    variant = "rougeLsum"
