"""What a search returns: hypotheses with their scores (and optionally attention)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Hypothesis:
    """One output sequence: token ids without specials, its score, and attention if kept."""

    tokens: list[int]
    score: float  # total log-probability, </s> included
    attention: Tensor | None = None  # (T, S) weights per output token, </s> included
