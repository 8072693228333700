"""The pointer-generator output (See et al., 2017): mix generating from the vocabulary with
copying source tokens through the attention weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointerGenerator(nn.Module):
    """p = p_gen · softmax(logits) + (1 − p_gen) · Σ_{s: src_s = w} a_s, with
    p_gen = σ(w · [features; context; input embedding] + b).

    Copying needs source and target ids in one vocabulary (a joint tokenizer), so a source
    piece's id is also its target id.
    """

    def __init__(self, hidden_size: int, memory_size: int, embedding_dim: int) -> None:
        super().__init__()
        self.switch = nn.Linear(hidden_size + memory_size + embedding_dim, 1)

    def forward(
        self,
        logits: Tensor,
        features: Tensor,
        context: Tensor,
        weights: Tensor,
        embedded: Tensor,
        src: Tensor,
    ) -> Tensor:
        """Log-probabilities (B, T, V) from logits (B, T, V), features (B, T, H), context
        (B, T, M), weights (B, T, S), input embeddings (B, T, E) and source ids (B, S)."""
        p_gen = torch.sigmoid(self.switch(torch.cat([features, context, embedded], -1)))
        vocab = torch.softmax(logits.float(), dim=-1)
        index = src[:, None, :].expand(-1, weights.size(1), -1)  # (B, T, S)
        copied = torch.zeros_like(vocab).scatter_add(-1, index, weights.float())
        mixed = p_gen * vocab + (1.0 - p_gen) * copied
        return torch.log(mixed.clamp(min=1e-12))
