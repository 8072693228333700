""" "multihead": several attention heads over a chosen score, their contexts combined."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from seq2seq.modules.attention import as_steps, from_steps
from seq2seq.modules.protocols import AlignmentHistory
from seq2seq.registry import register


@register("attention", "multihead")
class MultiHeadAttention(nn.Module):
    """`heads` attention heads in `hidden_size / heads`-sized subspaces, each with the chosen
    score (scaled dot product or additive); the concatenated head contexts are projected back
    to the memory size. The returned weights are the heads' mean (still summing to one)."""

    needs_history = False

    def __init__(
        self,
        query_size: int,
        key_size: int,
        heads: int = 4,
        hidden_size: int | None = None,
        score: Literal["scaled_dot", "additive"] = "scaled_dot",
    ) -> None:
        super().__init__()
        hidden = hidden_size or key_size
        if heads <= 0 or hidden % heads:
            raise ValueError(
                f"hidden_size ({hidden}) must be a positive multiple of heads ({heads})"
            )
        self.heads, self.head_size, self.hidden = heads, hidden // heads, hidden
        self.query_proj = nn.Linear(query_size, hidden)
        self.key_proj = nn.Linear(key_size, hidden, bias=False)
        self.value_proj = nn.Linear(key_size, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, key_size)
        self.energy = (
            nn.Parameter(torch.randn(heads, self.head_size) / math.sqrt(self.head_size))
            if score == "additive"
            else None
        )

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys and values, (B, S, 2 · hidden), once per source batch."""
        return torch.cat([self.key_proj(memory), self.value_proj(memory)], dim=-1)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        history: AlignmentHistory | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), mean weights (B[, T], S)."""
        context, weights, _ = self.attend_heads(query, keys, memory, mask)
        return context, weights

    def attend_heads(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """As `forward`, plus each head's weights (B[, T], heads, S) for attention displays."""
        query, single = as_steps(query)
        B, T, _ = query.shape
        S = keys.size(1)
        n, d = self.heads, self.head_size
        q = self.query_proj(query).view(B, T, n, d)
        k = keys[..., : self.hidden].view(B, S, n, d)
        v = keys[..., self.hidden :].view(B, S, n, d)
        if self.energy is None:
            scores = torch.einsum("btnd,bsnd->bnts", q, k) / math.sqrt(d)
        else:
            # 2 vᵀσ(2h) = vᵀtanh(h) + Σv: a constant per head and row, so the same softmax as
            # the tanh form, at a quarter of tanh's cost on CPUs (as in `additive.py`)
            hidden = (2.0 * q)[:, :, None] + (2.0 * k)[:, None]  # (B, T, S, n, d)
            scores = 2.0 * torch.einsum("btsnd,nd->bnts", torch.sigmoid_(hidden), self.energy)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, n, T, S)
        heads = torch.einsum("bnts,bsnd->btnd", weights, v).reshape(B, T, n * d)
        context = self.out_proj(heads)  # (B, T, M)
        per_head = weights.transpose(1, 2)  # (B, T, n, S)
        context, mean = from_steps(context, per_head.mean(dim=2), single)
        return context, mean, per_head.squeeze(1) if single else per_head
