"""A convolutional encoder for seq2seq: gated convolutions with residual connections."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.modules.protocols import EncoderOutput

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """`num_layers` 1-D convolutions over the source, each h ← h + GLU(conv(h)) · √0.5.

    Padding is zeroed before every convolution, so a sentence encodes the same alone and in a
    padded batch. The decoder's initial state comes from each layer's mean over real positions.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 4,
        kernel_size: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if num_layers < 1 or hidden_size < 1:
            raise ValueError("num_layers and hidden_size must be positive")
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden_size, 2 * hidden_size, kernel_size, padding=kernel_size // 2)
            for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.output_size = hidden_size

    def forward(self, embedded: Tensor, lengths: Tensor) -> EncoderOutput:
        """(B, S, E) embeddings, (B,) lengths → states (B, S, H), final (L, B, H), mask (B, S)."""
        S = embedded.size(1)
        mask = torch.arange(S, device=lengths.device)[None, :] < lengths[:, None]
        keep = mask.unsqueeze(-1).to(embedded.dtype)  # (B, S, 1)
        h = self.input_proj(embedded) * keep
        finals = []
        for conv in self.convs:
            gated = F.glu(conv(self.dropout(h).transpose(1, 2)), dim=1).transpose(1, 2)
            h = (h + gated) * math.sqrt(0.5) * keep
            finals.append(h.sum(1) / keep.sum(1).clamp(min=1.0))
        return EncoderOutput(h, torch.stack(finals), mask)
