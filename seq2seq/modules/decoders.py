"""Recurrent decoders: "luong" (attend with the current state) and "bahdanau" (attend with the
previous state, context into the RNN input and the output layer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from seq2seq.modules import gru, low_products, rnn_step
from seq2seq.modules.dropout import Dropout
from seq2seq.modules.initial_state import Init, InitialState
from seq2seq.modules.protocols import (
    DecoderState,
    EncoderOutput,
    MakeAttention,
    SequenceOutput,
    needs_history,
    with_heads,
)
from seq2seq.registry import register

Cell = Literal["gru", "lstm"]


def next_state(
    state: DecoderState,
    hidden: rnn_step.Hidden,
    context: Tensor | None,
    weights: Tensor | None,
    heads: Tensor | None,
    feed: Tensor | None = None,
) -> DecoderState:
    """The state after one step: the RNN's new state, this step's attention, the coverage
    summed over the steps so far, and the next position."""
    coverage = state.coverage
    if weights is not None:
        coverage = weights if coverage is None else coverage + weights
    return replace(
        state,
        hidden=hidden,
        feed=feed,
        weights=weights,
        context=context,
        coverage=coverage,
        position=state.position + 1,
        extra=with_heads(state.extra, heads),
    )


class RecurrentDecoder(nn.Module):
    """Shared parts: the RNN, the initial state, attention and dropout."""

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        make_attention: MakeAttention | None,
        cell: Cell,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        init: Init,
        feed_size: int = 0,
        context_into_rnn: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError("hidden_size and num_layers must be positive")
        self.attention = make_attention(query_size=hidden_size) if make_attention else None
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        with_attention = self.attention is not None
        extra = (feed_size + (memory_size if context_into_rnn else 0)) if with_attention else 0
        self.rnn = rnn_class(
            input_size + extra,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.is_lstm = cell == "lstm"
        self.initial = InitialState(init, memory_size, hidden_size, num_layers)
        self.dropout = Dropout(dropout)
        self.hidden_size = hidden_size

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial hidden state and precomputed attention keys."""
        first: Tensor = self.initial(encoded)
        hidden = (first, torch.zeros_like(first)) if self.is_lstm else first
        keys = self.attention.prepare(encoded.states) if self.attention is not None else None
        return DecoderState(hidden, encoded.states, encoded.mask, keys=keys)

    def attend(self, query: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Context and weights for a (B, H) or (B, T, H) query."""
        context, weights, _ = self.attend_with_heads(query, state)
        return context, weights

    def step_tokens(
        self, prev: Tensor, embedding: nn.Module, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """`step(embedding(prev), state)`; in CPU decoding with the RNN's first-layer input
        gates looked up per token (`modules/rnn_step.py`), where this class's own step runs."""
        step = getattr(self, "step")  # noqa: B009 (defined by the subclasses)
        embedded = embedding(prev)
        if not self._table_steps(embedding):
            return step(embedded, state)
        assert isinstance(self.rnn, nn.RNNBase) and isinstance(embedding, nn.Embedding)
        return step(embedded, state, rnn_step.token_gates(self.rnn, embedding, prev))

    def prepare_tokens(self, embedding: nn.Module) -> None:
        """Make `step_tokens`' table now (before decoding workers fork, so that they share it)."""
        if self._table_steps(embedding):
            assert isinstance(self.rnn, nn.RNNBase) and isinstance(embedding, nn.Embedding)
            rnn_step.prepare(self.rnn, embedding)

    def _table_steps(self, embedding: nn.Module) -> bool:
        """Whether this class's own step runs and the table may stand in for the RNN's input."""
        own_step = getattr(type(self), "step", None) in _TOKEN_STEPS
        return own_step and rnn_step.usable(self.rnn, embedding)

    def rnn_step(
        self, embedded: Tensor, rest: Tensor | None, hidden: rnn_step.Hidden, gates: Tensor | None
    ) -> tuple[Tensor, rnn_step.Hidden]:
        """One RNN step on [embedded; rest] → (B, H) output and the new state; from the
        embedding's `gates` (`step_tokens`) when given."""
        if gates is not None:
            assert isinstance(self.rnn, nn.RNNBase)
            return rnn_step.step(self.rnn, gates, rest, hidden)
        rnn_input = embedded if rest is None else torch.cat([embedded, rest], -1)
        output, hidden = self.rnn(rnn_input.unsqueeze(1), hidden)
        return output.squeeze(1), hidden

    @property
    def shares_source(self) -> bool:
        """Whether `step` takes states whose memory is held once for several hypotheses
        (`DecoderState.beams` > 1): the built-in steps do, unless their attention has a history
        (it scores each row on its own). A subclass with its own `step` or attention code
        declares it again."""
        cls = type(self)
        step = getattr(cls, "step", None)
        own_code = step in _SHARING_STEPS and cls.attend_with_heads is _SHARING_ATTEND
        return own_code and not needs_history(self.attention)

    def attend_with_heads(
        self, query: Tensor, state: DecoderState
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Context, weights and, for multi-head attention, per-head weights (B[, T], n, S)."""
        if state.beams == 1:
            return self._attend(query, state)
        # (N·K, H) hypotheses against (N, S, ·) memory: each sentence's K queries as K steps
        context, weights, heads = self._attend(query.view(-1, state.beams, query.size(-1)), state)
        flat_heads = None if heads is None else heads.flatten(0, 1)
        return context.flatten(0, 1), weights.flatten(0, 1), flat_heads

    def _attend(self, query: Tensor, state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None]:
        assert self.attention is not None and state.keys is not None
        if needs_history(self.attention):
            context, weights = self.attention(
                query, state.keys, state.memory, state.mask, state.history()
            )
            return context, weights, None
        heads = getattr(self.attention, "attend_heads", None)
        if heads is not None:
            return heads(query, state.keys, state.memory, state.mask)
        context, weights = self.attention(query, state.keys, state.memory, state.mask)
        return context, weights, None


@register("decoder", "luong")
class LuongDecoder(RecurrentDecoder):
    """Luong et al. (2015): the RNN steps first, then attends with its new output h_t.

    The attentional vector h̃ = tanh(W [context; h_t]) is the step's feature; with input feeding
    it also joins the next step's RNN input.
    """

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        make_attention: MakeAttention | None = None,
        cell: Cell = "gru",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.2,
        input_feeding: bool = True,
        init: Init = "bridge",
    ) -> None:
        super().__init__(
            input_size,
            memory_size,
            make_attention,
            cell,
            hidden_size,
            num_layers,
            dropout,
            init,
            feed_size=hidden_size if input_feeding else 0,
        )
        self.input_feeding = input_feeding and self.attention is not None
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size) if self.attention else None

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Adds a zero input feed."""
        state = super().init_state(encoded)
        if self.input_feeding:
            state.feed = encoded.states.new_zeros(encoded.states.size(0), self.hidden_size)
        return state

    def _features(
        self, output: Tensor, state: DecoderState
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """RNN output (B[, T], H) → features, context, weights and per-head weights."""
        if self.attention is None or self.combine is None:
            return self.dropout(output), None, None, None
        context, weights, heads = self.attend_with_heads(output, state)
        combined = low_products.linear(self.combine, torch.cat([context, output], dim=-1))
        features = torch.tanh(combined)
        return self.dropout(features), context, weights, heads

    def step(
        self, embedded: Tensor, state: DecoderState, gates: Tensor | None = None
    ) -> tuple[Tensor, DecoderState]:
        """(B, E) previous-token embedding → features (B, H), next state."""
        output, hidden = self.rnn_step(embedded, state.feed, state.hidden, gates)
        features, context, weights, heads = self._features(output, state)
        feed = features if self.input_feeding else None
        return features, next_state(state, hidden, context, weights, heads, feed)

    def forward_sequence(self, embedded: Tensor, state: DecoderState) -> SequenceOutput | None:
        """All T steps at once under teacher forcing: (B, T, E) → features (B, T, H).

        None when a step depends on the previous one beyond the RNN (input feeding, attention
        that needs its history).
        """
        if self.input_feeding or needs_history(self.attention):
            return None
        if gru.supports(self.rnn, embedded) and isinstance(state.hidden, Tensor):
            output, _ = gru.run(self.rnn, embedded, state.hidden)  # CPU: modules/gru.py
        else:
            output, _ = self.rnn(embedded, state.hidden)
        features, context, weights, _ = self._features(output, state)
        return SequenceOutput(features, context, weights)


@register("decoder", "bahdanau")
class BahdanauDecoder(RecurrentDecoder):
    """Bahdanau et al. (2015), as in the paper: attend with the previous state s_{i-1}; the
    context c_i joins the RNN input [y_{i-1}; c_i] and the output layer
    tanh(W [s_i; c_i; y_{i-1}]) (the paper's deep output, with tanh in place of maxout)."""

    def __init__(
        self,
        input_size: int,
        memory_size: int,
        make_attention: MakeAttention | None = None,
        cell: Cell = "gru",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.2,
        init: Init = "bridge",
    ) -> None:
        super().__init__(
            input_size,
            memory_size,
            make_attention,
            cell,
            hidden_size,
            num_layers,
            dropout,
            init,
            context_into_rnn=True,
        )
        context = memory_size if self.attention is not None else 0
        self.output = nn.Linear(hidden_size + context + input_size, hidden_size)

    def step(
        self, embedded: Tensor, state: DecoderState, gates: Tensor | None = None
    ) -> tuple[Tensor, DecoderState]:
        """(B, E) previous-token embedding → features (B, H), next state."""
        top = state.hidden[0][-1] if isinstance(state.hidden, tuple) else state.hidden[-1]
        context = weights = heads = None
        if self.attention is not None:
            context, weights, heads = self.attend_with_heads(top, state)
        output, hidden = self.rnn_step(embedded, context, state.hidden, gates)
        parts = [output] if context is None else [output, context]
        features = torch.tanh(self.output(torch.cat([*parts, embedded], -1)))
        return self.dropout(features), next_state(state, hidden, context, weights, heads)


# the step code that knows DecoderState.beams (see RecurrentDecoder.shares_source)
_SHARING_STEPS = (LuongDecoder.step, BahdanauDecoder.step)
# the step code that takes `gates` (see RecurrentDecoder.step_tokens)
_TOKEN_STEPS = _SHARING_STEPS
_SHARING_ATTEND = RecurrentDecoder.attend_with_heads
