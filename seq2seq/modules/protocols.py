"""The interfaces every encoder, attention and decoder implements, and the shape legend.

Shapes: B batch, S source length, T target length, E embedding size, H decoder feature size,
M memory (encoder output) size, L layers, V vocabulary, K beam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol, runtime_checkable

import torch
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


@dataclass(frozen=True)
class AlignmentHistory:
    """What attention saw before this step, for mechanisms that depend on it."""

    previous: Tensor  # (B, S) weights of the previous step (zeros before the first)
    coverage: Tensor  # (B, S) sum of the weights of all previous steps
    position: int  # number of target steps already taken


@runtime_checkable
class Attention(Protocol):
    """Scores memory positions against a query; padding gets exactly zero weight.

    Mechanisms whose scores depend on earlier steps (location, coverage, local-m) set the
    attribute `needs_history = True`; only they are passed an AlignmentHistory (as a fifth
    argument), and only (B, H) queries. Mechanisms with several heads may also offer
    `attend_heads(query, keys, memory, mask)` → (context, weights, per-head weights
    (B[, T], n, S)); the built-in decoders then keep the last step's per-head weights in
    `DecoderState.extra[HEAD_WEIGHTS]` for attention displays.
    """

    def prepare(self, memory: Tensor) -> Tensor:
        """(B, S, M) memory → keys, computed once per source batch."""
        ...

    def __call__(
        self,
        query: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        history: AlignmentHistory | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query (B, H) or (B, T, H) → context (B[, T], M) and weights (B[, T], S)."""
        ...


def needs_history(attention: object) -> bool:
    """True for attention whose scores depend on previous steps."""
    return bool(getattr(attention, "needs_history", False))


def _select_hidden(
    hidden: Tensor | tuple[Tensor, Tensor], index: Tensor
) -> Tensor | tuple[Tensor, Tensor]:
    if isinstance(hidden, tuple):
        return (hidden[0].index_select(1, index), hidden[1].index_select(1, index))
    return hidden.index_select(1, index)


def hypothesis_rows(sentences: Tensor, beams: int) -> Tensor:
    """The rows of every hypothesis of `sentences` (N',) when each has `beams` consecutive rows."""
    if beams == 1:
        return sentences
    return (sentences[:, None] * beams + torch.arange(beams, device=sentences.device)).view(-1)


HEAD_WEIGHTS = "head_weights"  # DecoderState.extra key: (B, n, S) per-head weights of the step


def with_heads(extra: dict[str, Tensor], heads: Tensor | None) -> dict[str, Tensor]:
    """`extra` with this step's per-head attention weights (unchanged when there are none)."""
    return extra if heads is None else {**extra, HEAD_WEIGHTS: heads}


@dataclass
class DecoderState:
    """Everything a decoder carries from one step to the next; batch rows can be reordered.

    With `beams` > 1 (beam search, on decoders that declare `shares_source`), memory, mask and
    keys hold one row per source sentence and every other tensor `beams` consecutive rows per
    sentence, one per hypothesis: the source is not copied for each hypothesis.
    """

    hidden: Tensor | tuple[Tensor, Tensor]  # (L, B, H); LSTM: (h, c)
    memory: Tensor  # (B, S, M); (B / beams, S, M) with beams > 1
    mask: Tensor  # (B, S); (B / beams, S) with beams > 1
    keys: Tensor | None = None  # attention.prepare(memory)
    feed: Tensor | None = None  # (B, H) previous attentional vector, for input feeding
    weights: Tensor | None = None  # (B, S) attention weights of the last step
    context: Tensor | None = None  # (B, M) attention context of the last step
    coverage: Tensor | None = None  # (B, S) sum of all attention weights so far
    position: int = 0  # target steps taken
    extra: dict[str, Tensor] = field(default_factory=dict)  # plugin state, batch-first
    beams: int = 1  # hypotheses per row of memory, mask and keys

    def select(self, index: Tensor) -> DecoderState:
        """Source rows `index` (B',), each with all its hypotheses: repeats, reorders, drops
        finished sentences."""
        moved = self.reorder_beams(hypothesis_rows(index, self.beams))
        return replace(
            moved,
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            keys=None if self.keys is None else self.keys.index_select(0, index),
        )

    def expand_beams(self, beams: int) -> DecoderState:
        """`beams` hypotheses per row, sharing its memory, mask and keys (see the class note)."""
        assert self.beams == 1, "already expanded"
        rows = torch.arange(self.mask.size(0), device=self.mask.device)
        return replace(self.reorder_beams(rows.repeat_interleave(beams)), beams=beams)

    def source_mask(self, row: int) -> Tensor:
        """(S,) source mask of hypothesis row `row`."""
        return self.mask[row // self.beams]

    def reorder_beams(self, index: Tensor) -> DecoderState:
        """Rows `index` of the per-hypothesis tensors; memory, mask and keys stay as they are.

        For beam search's per-step reordering, where `index` only moves rows among the beams
        of the same source sentence, whose memory, mask and keys are identical: copying them
        every step would be the largest cost of a decoding step.
        """

        def pick(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.index_select(0, index)

        return replace(
            self,
            hidden=_select_hidden(self.hidden, index),
            feed=pick(self.feed),
            weights=pick(self.weights),
            context=pick(self.context),
            coverage=pick(self.coverage),
            extra={k: v.index_select(0, index) for k, v in self.extra.items()},
        )

    @property
    def head_weights(self) -> Tensor | None:
        """(B, n, S) per-head weights of the last step, for multi-head attention; else None."""
        return self.extra.get(HEAD_WEIGHTS)

    def history(self) -> AlignmentHistory:
        """The alignment history attention sees at the next step."""
        rows = self.mask.size(0) * self.beams
        zeros = self.mask.new_zeros((rows, self.mask.size(1)), dtype=self.memory.dtype)
        previous = self.weights if self.weights is not None else zeros
        coverage = self.coverage if self.coverage is not None else zeros
        return AlignmentHistory(previous, coverage, self.position)


class SequenceOutput(NamedTuple):
    """A decoder's output for a whole target sequence."""

    features: Tensor  # (B, T, H)
    context: Tensor | None  # (B, T, M) attention context per step
    weights: Tensor | None  # (B, T, S) attention weights per step


@runtime_checkable
class Decoder(Protocol):
    """Produces one feature vector per target position; the model projects it to the vocabulary.

    `step` must leave the step's attention weights and context in the returned state (None
    without attention), and advance `position` and `coverage` (see `next_state`).
    """

    hidden_size: int  # H

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """The state before the first target token."""
        ...

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B, E) embedding of the previous token → features (B, H) and the next state."""
        ...


# A decoder may also declare `shares_source = True`: its `step` then takes states with `beams` > 1
# (memory, mask and keys once per sentence, see DecoderState), which beam search uses.
# A decoder may also offer `step_tokens(prev (B,), embedding, state)`, the same as
# `step(embedding(prev), state)`: the model then calls it in decoding, which lets the built-in RNN
# decoders look up their first layer's input gates per token (modules/rnn_step.py).
# A decoder may also offer `forward_sequence(embedded (B,T,E), state) -> SequenceOutput | None`:
# the whole target in one call under full teacher forcing (None when it cannot, e.g. with
# input feeding). The model falls back to `step` whenever it is missing or returns None.
MakeAttention = Callable[..., Attention | None]
