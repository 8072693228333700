"""Attention mechanisms: "bahdanau" (additive), "dot" and "general" (Luong bilinear)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.registry import register


def attend(scores: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Masked softmax over (B, T, S) scores, then the weighted sum of (B, S, M) memory.

    Padding positions get exactly zero weight.
    """
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, T, S)
    context = torch.bmm(weights, memory)  # (B, T, M)
    return context, weights


def as_steps(query: Tensor) -> tuple[Tensor, bool]:
    """(B, H) → (B, 1, H) so one code path serves a single step and a whole sequence."""
    return (query.unsqueeze(1), True) if query.dim() == 2 else (query, False)


def from_steps(context: Tensor, weights: Tensor, single: bool) -> tuple[Tensor, Tensor]:
    """Undo `as_steps` on the outputs."""
    return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


@register("attention", "bahdanau")
class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau et al., 2015): score = vᵀ tanh(W q + U k)."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        hidden = hidden_size or key_size
        self.key_proj = nn.Linear(key_size, hidden, bias=False)
        self.query_proj = nn.Linear(query_size, hidden, bias=True)
        self.energy = nn.Linear(hidden, 1, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        """(B, S, M) → projected keys (B, S, A), once per source batch."""
        return self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S)."""
        query, single = as_steps(query)
        q = self.query_proj(query)  # (B, T, A)
        scores = self.energy(torch.tanh(q[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)
        return from_steps(*attend(scores, memory, mask), single)


@register("attention", "dot")
class DotAttention(nn.Module):
    """Luong dot attention: score = qᵀ k; the query and memory sizes must match."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs decoder hidden_size ({query_size}) equal to the encoder "
                f"output size ({key_size}); use 'general' or 'bahdanau', or change a size"
            )

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys are the memory itself."""
        return memory

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S)."""
        query, single = as_steps(query)
        scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        return from_steps(*attend(scores, memory, mask), single)


@register("attention", "general")
class GeneralAttention(DotAttention):
    """Luong general (bilinear) attention: score = qᵀ W k."""

    def __init__(self, query_size: int, key_size: int) -> None:
        nn.Module.__init__(self)
        self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys W k (B, S, H), once per source batch."""
        return self.key_proj(memory)
