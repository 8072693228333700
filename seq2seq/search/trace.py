"""The attention weights a search keeps for every output row: the mean over heads, and each
head's weights when the attention has several."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def _grow(kept: Tensor | None, step: Tensor, dim: int) -> Tensor:
    return step if kept is None else torch.cat([kept, step], dim)


@dataclass(frozen=True)
class AttentionTrace:
    """Weights so far: `weights` (N, t, S) and, for multi-head attention, `heads` (N, n, t, S)."""

    weights: Tensor | None = None
    heads: Tensor | None = None

    def extended(self, state: Any) -> AttentionTrace:
        """Add the step that produced `state` (a state without attention adds nothing)."""
        if state.weights is None:
            return self
        step_heads = getattr(state, "head_weights", None)
        heads = None if step_heads is None else _grow(self.heads, step_heads[:, :, None], 2)
        return AttentionTrace(_grow(self.weights, state.weights[:, None], 1), heads)

    def select(self, rows: Tensor) -> AttentionTrace:
        """Rows `rows` (N',) of everything kept."""
        return AttentionTrace(
            None if self.weights is None else self.weights[rows],
            None if self.heads is None else self.heads[rows],
        )

    def of_row(
        self, row: int, columns: Tensor | slice, steps: int | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """One row's (T, S) weights and (n, T, S) head weights on the CPU, trimmed to its real
        source `columns` and its first `steps` steps."""
        until = slice(None, steps)
        weights = None if self.weights is None else self.weights[row][until][:, columns].cpu()
        heads = None if self.heads is None else self.heads[row][:, until][:, :, columns].cpu()
        return weights, heads
