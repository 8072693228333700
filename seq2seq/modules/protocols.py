"""The interfaces every encoder, attention and decoder implements, and the shape legend.

Shapes: B batch, S source length, T target length, E embedding size, H decoder feature size,
M memory (encoder output) size, L layers, V vocabulary, K beam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor


class EncoderOutput(NamedTuple):
    """What an encoder hands to the decoder."""

    states: Tensor  # (B, S, M) memory for attention
    final: Tensor  # (L, B, M) last hidden state of each layer, directions concatenated
    mask: Tensor  # (B, S) bool, True = real token


@runtime_checkable
class Encoder(Protocol):
    """Reads embedded source tokens into memory."""

    output_size: int  # M

    def __call__(self, embedded: Tensor, lengths: Tensor) -> EncoderOutput:
        """(B, S, E) embeddings and (B,) lengths → EncoderOutput."""
        ...


@runtime_checkable
class Attention(Protocol):
    """Scores memory positions against a query; padding gets exactly zero weight."""

    def prepare(self, memory: Tensor) -> Tensor:
        """(B, S, M) memory → keys (B, S, A), computed once per source batch."""
        ...

    def __call__(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Query (B, H) or (B, T, H) → context (B[, T], M) and weights (B[, T], S)."""
        ...


def _select_hidden(
    hidden: Tensor | tuple[Tensor, Tensor], index: Tensor
) -> Tensor | tuple[Tensor, Tensor]:
    if isinstance(hidden, tuple):
        return (hidden[0].index_select(1, index), hidden[1].index_select(1, index))
    return hidden.index_select(1, index)


@dataclass
class DecoderState:
    """Everything a decoder carries from one step to the next; batch rows can be reordered."""

    hidden: Tensor | tuple[Tensor, Tensor]  # (L, B, H); LSTM: (h, c)
    memory: Tensor  # (B, S, M)
    mask: Tensor  # (B, S)
    keys: Tensor | None = None  # attention.prepare(memory)
    feed: Tensor | None = None  # (B, H) previous attentional vector, for input feeding
    weights: Tensor | None = None  # (B, S) attention weights of the last step
    extra: dict[str, Tensor] = field(default_factory=dict)  # plugin state, batch-first

    def select(self, index: Tensor) -> DecoderState:
        """Rows `index` (B',) of every tensor: expands for beams, reorders, drops finished."""

        def pick(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.index_select(0, index)

        return replace(
            self,
            hidden=_select_hidden(self.hidden, index),
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            keys=pick(self.keys),
            feed=pick(self.feed),
            weights=pick(self.weights),
            extra={k: v.index_select(0, index) for k, v in self.extra.items()},
        )


@runtime_checkable
class Decoder(Protocol):
    """Produces one feature vector per target position; the model projects it to the vocabulary."""

    hidden_size: int  # H

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """The state before the first target token."""
        ...

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B, E) embedding of the previous token → features (B, H) and the next state."""
        ...


# A decoder may also offer `forward_sequence(embedded (B,T,E), state) -> features (B,T,H) | None`:
# the whole target in one call under full teacher forcing (None when it cannot, e.g. with
# input feeding). The model falls back to `step` whenever it is missing or returns None.
MakeAttention = Callable[..., Attention]
