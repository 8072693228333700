"""How a recurrent decoder's first hidden state comes from the encoder: zeros, the encoder's last
state, a bridge layer over it, or a bridge over the mean of the source states."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seq2seq.modules.protocols import EncoderOutput

Init = Literal["zeros", "last", "bridge", "mean"]


class InitialState(nn.Module):
    """Turns the encoder's output into the decoder's first hidden state (L, B, H)."""

    def __init__(self, how: Init, memory_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        if how == "last" and memory_size != hidden_size:
            raise ValueError(
                f"init 'last' needs decoder hidden_size ({hidden_size}) equal to the encoder "
                f"output size ({memory_size}); use init 'bridge' or change a size"
            )
        self.how = how
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.bridge = nn.Linear(memory_size, hidden_size) if how in ("bridge", "mean") else None

    def forward(self, encoded: EncoderOutput) -> Tensor:
        """(L_enc, B, M) finals or (B, S, M) states → (L, B, H)."""
        B = encoded.states.size(0)
        if self.how == "zeros":
            return encoded.states.new_zeros(self.num_layers, B, self.hidden_size)
        if self.how == "mean":
            mask = encoded.mask.unsqueeze(-1).to(encoded.states.dtype)  # (B, S, 1)
            mean = (encoded.states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            source = mean.unsqueeze(0)  # (1, B, M)
        else:
            source = encoded.final  # (L_enc, B, M)
        if source.size(0) != self.num_layers:  # layer counts differ: every layer gets the top one
            source = source[-1:].expand(self.num_layers, -1, -1)
        if self.bridge is not None:
            source = torch.tanh(self.bridge(source))
        return source.contiguous()
