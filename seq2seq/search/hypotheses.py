"""What a search returns (hypotheses with scores), the n-best container, and the penalties."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

LengthNorm = Literal["gnmt", "average", "none"]


@dataclass
class Hypothesis:
    """One output sequence: token ids without specials, its score, and attention if kept."""

    tokens: list[int]
    score: float  # final score: total log-probability, length-normalised and penalised by beam
    attention: Tensor | None = None  # (T, S) weights per output token, </s> included
    log_prob: float | None = None  # total log-probability, </s> included (beam search)
    head_attention: Tensor | None = None  # (n, T, S) per-head weights (multi-head attention)


def length_penalty(length: int | Tensor, alpha: float, kind: LengthNorm) -> float | Tensor:
    """The divisor of the log-probability: GNMT ((5 + |Y|) / 6)^α, |Y|^α, or 1."""
    if kind == "none" or alpha == 0.0:
        return 1.0
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return length**alpha


def coverage_penalty(coverage: Tensor, mask: Tensor, beta: float) -> Tensor:
    """GNMT's β Σ_i log(min(Σ_j a_ij, 1)) over real source positions, (N,) from (N, S)."""
    capped = coverage.clamp(min=1e-10, max=1.0).log()
    return beta * (capped * mask).sum(-1)


@dataclass
class NBest:
    """The best finished hypotheses of one sentence, kept sorted (HF's BeamHypotheses idea)."""

    size: int
    items: list[Hypothesis] = field(default_factory=list)

    def add(self, hyp: Hypothesis) -> None:
        """Keep `hyp` if it is among the `size` best."""
        self.items.append(hyp)
        self.items.sort(key=lambda h: -h.score)
        del self.items[self.size :]

    @property
    def worst(self) -> float:
        """The score a new hypothesis must beat to enter (−∞ while not full)."""
        return self.items[-1].score if len(self.items) >= self.size else -math.inf

    def __len__(self) -> int:
        return len(self.items)
