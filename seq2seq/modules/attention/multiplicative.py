"""Multiplicative attention: "dot", "general" (bilinear) and "scaled_dot"."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seq2seq.modules.attention import as_steps, attend, from_steps
from seq2seq.modules.protocols import AlignmentHistory
from seq2seq.registry import register


class ProductAttention(nn.Module):
    """score = scale · qᵀ K, where K = prepare(memory)."""

    needs_history = False
    scale = 1.0

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys are the memory itself."""
        return memory

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        history: AlignmentHistory | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S)."""
        query, single = as_steps(query)
        scores = torch.bmm(query, keys.transpose(1, 2)) * self.scale  # (B, T, S)
        return from_steps(*attend(scores, memory, mask), single)


@register("attention", "dot")
class DotAttention(ProductAttention):
    """Luong dot attention: score = qᵀ k; the query and memory sizes must match."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs decoder hidden_size ({query_size}) equal to the encoder "
                f"output size ({key_size}); use 'general' or 'bahdanau', or change a size"
            )


@register("attention", "general")
class GeneralAttention(ProductAttention):
    """Luong general (bilinear) attention: score = qᵀ W k."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys W k (B, S, H), once per source batch."""
        return self.key_proj(memory)


@register("attention", "scaled_dot")
class ScaledDotAttention(ProductAttention):
    """Scaled dot product (Vaswani et al., 2017): score = qᵀ k / √d; keys are projected to the
    query size when the sizes differ."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.key_proj = (
            nn.Linear(key_size, query_size, bias=False) if query_size != key_size else None
        )
        self.scale = 1.0 / math.sqrt(query_size)

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys in the query's space."""
        return memory if self.key_proj is None else self.key_proj(memory)
