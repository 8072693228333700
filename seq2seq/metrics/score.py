"""The result type of every metric, and scoring with several metrics at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seq2seq.errors import DataError
from seq2seq.registry import build, split_spec


@dataclass(frozen=True)
class Score:
    """A metric's value with the settings needed to reproduce it."""

    name: str
    value: float
    signature: str  # e.g. sacrebleu's "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    higher_is_better: bool = True

    def __str__(self) -> str:
        return f"{self.name} = {self.value:.2f}  ({self.signature})"


def score_all(
    metrics: Sequence[str | dict[str, Any]], hyps: Sequence[str], refs: Sequence[str]
) -> list[Score]:
    """Score hypotheses against references with each metric spec."""
    if len(hyps) != len(refs):
        raise DataError(
            f"{len(hyps)} hypotheses but {len(refs)} references; they must align line by line"
        )
    if not hyps:
        raise DataError("nothing to score: no hypotheses")
    scores = []
    for i, spec in enumerate(metrics):
        metric = build("metric", spec, where=f"metrics[{i}]")
        scores.append(metric(list(hyps), list(refs)))
    return scores


def metric_names(metrics: Sequence[str | dict[str, Any]]) -> list[str]:
    """The registered names of metric specs."""
    return [split_spec(spec)[0] for spec in metrics]
