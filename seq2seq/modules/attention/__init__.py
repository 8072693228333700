"""Attention mechanisms, one family per file; shared here: masking, normalising, shapes.

additive.py        "bahdanau" (optional coverage), "concat", "location"
multiplicative.py  "dot", "general", "scaled_dot"
multihead.py       "multihead"
local.py           "local" (Luong local-p and local-m)
none.py            "none" (an attention-free model)
"""

from __future__ import annotations

import torch
from torch import Tensor


def attend(scores: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Masked softmax over (B, T, S) scores, then the weighted sum of (B, S, M) memory.

    `mask` is (B, S), or (B, T, S) for step-dependent windows; masked positions get exactly
    zero weight.
    """
    allowed = mask[:, None, :] if mask.dim() == 2 else mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, T, S)
    context = torch.bmm(weights, memory)  # (B, T, M)
    return context, weights


def as_steps(query: Tensor) -> tuple[Tensor, bool]:
    """(B, H) → (B, 1, H) so one code path serves a single step and a whole sequence."""
    return (query.unsqueeze(1), True) if query.dim() == 2 else (query, False)


def from_steps(context: Tensor, weights: Tensor, single: bool) -> tuple[Tensor, Tensor]:
    """Undo `as_steps` on the outputs."""
    return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


__all__ = ["as_steps", "attend", "from_steps"]
