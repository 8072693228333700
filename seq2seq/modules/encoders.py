"""Recurrent encoders: "rnn", "gru" and "lstm", uni- or bidirectional, stacked, padding skipped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.modules import gru
from seq2seq.modules.dropout import Dropout
from seq2seq.modules.protocols import EncoderOutput
from seq2seq.registry import register

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """A stacked recurrent encoder over variable-length sequences (packed, or modules/gru.py)."""

    def __init__(
        self,
        cell: Literal["rnn", "gru", "lstm"],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
    ) -> None:
        super().__init__()
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError("hidden_size and num_layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = _CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **extra,
        )
        self.dropout = Dropout(dropout)
        self.is_lstm = cell == "lstm"  # int8 export swaps the module class: keep the fact
        self.num_layers = num_layers
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions

    def _zero_state(self, embedded: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The zero initial state, sized from the input: a traced int8 RNN would otherwise
        build it from the example batch's size and keep that size (see seq2seq/export)."""
        zeros = embedded.new_zeros(
            self.num_layers * self.directions, embedded.size(0), self.rnn.hidden_size
        )
        return (zeros, zeros) if self.is_lstm else zeros

    def _packed(
        self, embedded: Tensor, lengths: Tensor, initial: Tensor | tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """PyTorch's RNN over the packed batch → states (B, S, D·H), final (L·D, B, H)."""
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, hidden = self.rnn(packed, initial)
        states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=embedded.size(1))
        if isinstance(hidden, tuple):  # LSTM: (h, c); the decoder starts from h
            hidden = hidden[0]
        return states, hidden

    def forward(self, embedded: Tensor, lengths: Tensor) -> EncoderOutput:
        """(B, S, E) embeddings, (B,) lengths → states (B, S, M), final (L, B, M), mask (B, S)."""
        B, S, _ = embedded.shape
        mask = torch.arange(S, device=lengths.device)[None, :] < lengths[:, None]
        initial = self._zero_state(embedded)
        if gru.supports(self.rnn, embedded) and isinstance(initial, Tensor):
            states, hidden = gru.run(self.rnn, embedded, initial, ~mask)  # CPU: modules/gru.py
        else:
            states, hidden = self._packed(embedded, lengths, initial)
        # (L·D, B, H) → (L, D, B, H) → (L, B, D·H): directions side by side per layer
        final = hidden.view(self.num_layers, self.directions, B, -1)
        final = torch.cat(final.unbind(1), dim=-1)
        return EncoderOutput(self.dropout(states), final, mask)


def _recurrent(cell: Literal["gru", "lstm"], summary: str) -> Callable[..., RNNEncoder]:
    """A registered builder for `cell`; gru and lstm take the same arguments."""

    def build(
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> RNNEncoder:
        return RNNEncoder(cell, input_size, hidden_size, num_layers, bidirectional, dropout)

    build.__doc__ = summary
    build.__name__ = build.__qualname__ = f"{cell}_encoder"
    return build


gru_encoder = register("encoder", "gru")(
    _recurrent("gru", "GRU encoder; output size is hidden_size × 2 when bidirectional.")
)
lstm_encoder = register("encoder", "lstm")(
    _recurrent("lstm", "LSTM encoder; the decoder starts from the final hidden (not cell) states.")
)


@register("encoder", "rnn")
def rnn_encoder(
    input_size: int,
    hidden_size: int = 256,
    num_layers: int = 1,
    bidirectional: bool = True,
    dropout: float = 0.0,
    nonlinearity: Literal["tanh", "relu"] = "tanh",
) -> RNNEncoder:
    """Elman RNN encoder with a tanh or relu nonlinearity."""
    return RNNEncoder(
        "rnn", input_size, hidden_size, num_layers, bidirectional, dropout, nonlinearity
    )
