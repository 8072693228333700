""" "local": Luong et al. (2015) local attention, predictive (local-p) or monotonic (local-m)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seq2seq.modules.attention import as_steps, attend, from_steps
from seq2seq.modules.protocols import AlignmentHistory
from seq2seq.registry import register


@register("attention", "local")
class LocalAttention(nn.Module):
    """Attend to a window of 2·window+1 source positions around a centre p_t, with a Gaussian
    (σ = window / 2) favouring positions near p_t; scores use the general (bilinear) form.

    local-p predicts p_t = (len − 1) · sigmoid(v_pᵀ tanh(W_p h_t)); local-m takes p_t = t.
    Luong multiplies the windowed softmax by the Gaussian; here the log-Gaussian is added to the
    scores before the softmax, so the weights stay a distribution (they sum to one).
    """

    def __init__(
        self, query_size: int, key_size: int, mode: Literal["p", "m"] = "p", window: int = 5
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self.mode = mode
        self.needs_history = mode == "m"  # local-m needs the step number
        self.key_proj = nn.Linear(key_size, query_size, bias=False)
        self.predictor = (
            nn.Sequential(nn.Linear(query_size, query_size), nn.Tanh(), nn.Linear(query_size, 1))
            if mode == "p"
            else None
        )

    def prepare(self, memory: Tensor) -> Tensor:
        """Keys W k (B, S, H), once per source batch."""
        return self.key_proj(memory)

    def centres(self, query: Tensor, mask: Tensor, history: AlignmentHistory | None) -> Tensor:
        """p_t for every query step, (B, T), within each sentence's length."""
        last = (mask.sum(-1) - 1).to(query.dtype)[:, None]  # (B, 1)
        if self.predictor is not None:
            return last * torch.sigmoid(self.predictor(query).squeeze(-1))
        position = float(history.position) if history is not None else 0.0
        steps = position + torch.arange(query.size(1), device=query.device, dtype=query.dtype)
        return torch.minimum(steps[None, :], last)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        history: AlignmentHistory | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S) inside the window."""
        query, single = as_steps(query)
        scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        centre = self.centres(query, mask, history)[:, :, None]  # (B, T, 1)
        positions = torch.arange(keys.size(1), device=keys.device, dtype=query.dtype)
        distance = positions[None, None, :] - centre  # (B, T, S)
        sigma = self.window / 2
        scores = scores - distance.pow(2) / (2 * sigma * sigma)
        allowed = mask[:, None, :] & (distance.abs() <= self.window)
        return from_steps(*attend(scores, memory, allowed), single)
