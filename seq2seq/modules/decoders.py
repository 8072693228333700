"""Recurrent decoders: "luong" (attend with the current state, optional input feeding)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seq2seq.modules.protocols import DecoderState, EncoderOutput, MakeAttention
from seq2seq.registry import register

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


@register("decoder", "luong")
class LuongDecoder(nn.Module):
    """Luong et al. (2015): the RNN runs first, then attends with its current output.

    The attentional vector h̃ = tanh(W [context; h]) is the step's feature; with input feeding it
    is also fed to the next step's RNN input.
    """

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        make_attention: MakeAttention | None = None,
        cell: Literal["gru", "lstm"] = "gru",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.2,
        input_feeding: bool = True,
        init: Init = "bridge",
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.attention = make_attention(query_size=hidden_size) if make_attention else None
        self.input_feeding = input_feeding and self.attention is not None
        rnn_input = input_size + (hidden_size if self.input_feeding else 0)
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_class(
            rnn_input,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.is_lstm = cell == "lstm"
        self.initial = InitialState(init, memory_size, hidden_size, num_layers)
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size) if self.attention else None
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden_size

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial hidden state, precomputed attention keys and a zero input feed."""
        first: Tensor = self.initial(encoded)
        hidden = (first, torch.zeros_like(first)) if self.is_lstm else first
        keys = self.attention.prepare(encoded.states) if self.attention is not None else None
        B = encoded.states.size(0)
        feed = encoded.states.new_zeros(B, self.hidden_size) if self.input_feeding else None
        return DecoderState(hidden, encoded.states, encoded.mask, keys=keys, feed=feed)

    def _features(self, output: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """RNN output (B[, T], H) → attentional features and attention weights."""
        if self.attention is None or self.combine is None:
            return self.dropout(output), None
        assert state.keys is not None
        context, weights = self.attention(output, state.keys, state.memory, state.mask)
        features = torch.tanh(self.combine(torch.cat([context, output], dim=-1)))
        return self.dropout(features), weights

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B, E) previous-token embedding → features (B, H), next state."""
        rnn_input = embedded if state.feed is None else torch.cat([embedded, state.feed], -1)
        output, hidden = self.rnn(rnn_input.unsqueeze(1), state.hidden)
        features, weights = self._features(output.squeeze(1), state)
        feed = features if self.input_feeding else None
        return features, DecoderState(
            hidden, state.memory, state.mask, state.keys, feed, weights, state.extra
        )

    def forward_sequence(self, embedded: Tensor, state: DecoderState) -> Tensor | None:
        """All T steps at once under teacher forcing: (B, T, E) → (B, T, H); None with feeding."""
        if self.input_feeding:
            return None
        output, _ = self.rnn(embedded, state.hidden)
        features, _ = self._features(output, state)
        return features
