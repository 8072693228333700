"""The model's encode and step as functions of plain tensors, so they can be traced.

A `DecoderState` holds optional fields and an int step counter, which a traced graph cannot take.
`StateLayout` names the tensors a model's state carries (found by running it once); `flatten`
and `unflatten` convert between the state and a flat tuple in that order. `FlatModel.encode`
returns that tuple; `FlatModel.step` takes (previous tokens, *tuple) and returns
(log-probabilities, *next tuple).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.model import Seq2Seq
from seq2seq.modules.protocols import DecoderState

# Optional tensor fields of DecoderState, in the order they are flattened.
OPTIONAL_FIELDS = ("keys", "feed", "weights", "context", "coverage")
# Fields that only appear after the first step; the encode graph starts them at zero, which the
# decoders treat exactly like None (no previous weights, no coverage yet).
ZERO_STARTED = ("weights", "context", "coverage")


@dataclass(frozen=True)
class StateLayout:
    """Which tensors a model's decoder state carries after a step."""

    lstm: bool  # hidden is (h, c)
    fields: tuple[str, ...]  # the OPTIONAL_FIELDS that are present
    extra: tuple[str, ...]  # keys of state.extra set by encode (e.g. "src" for copying)
    produced: tuple[str, ...] = ()  # extra keys only a step sets (per-head weights): outputs only

    def names(self, outputs: bool = False) -> list[str]:
        """Names of the flat tensors, in order (a step's outputs add the `produced` keys)."""
        hidden = ["hidden.h", "hidden.c"] if self.lstm else ["hidden"]
        extra = self.extra_keys(outputs)
        return [*hidden, "memory", "mask", *self.fields, *(f"extra.{k}" for k in extra)]

    def extra_keys(self, outputs: bool) -> tuple[str, ...]:
        """The extra keys of a step's inputs, or of its outputs."""
        return self.extra + self.produced if outputs else self.extra

    def to_dict(self) -> dict[str, Any]:
        """Plain data for bundle.json."""
        return {
            "lstm": self.lstm,
            "fields": list(self.fields),
            "extra": list(self.extra),
            "produced": list(self.produced),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StateLayout:
        """The inverse of `to_dict`."""
        fields = tuple(str(f) for f in data["fields"])
        unknown = set(fields) - set(OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(f"unknown decoder state fields {sorted(unknown)}")
        extra = tuple(str(k) for k in data["extra"])
        return cls(bool(data["lstm"]), fields, extra, tuple(str(k) for k in data["produced"]))


def layout_of(encoded: DecoderState, after: DecoderState) -> StateLayout:
    """The layout of a model's state, from its state after encode and after one step."""
    fields = tuple(name for name in OPTIONAL_FIELDS if getattr(after, name) is not None)
    produced = tuple(sorted(set(after.extra) - set(encoded.extra)))
    return StateLayout(
        isinstance(after.hidden, tuple), fields, tuple(sorted(encoded.extra)), produced
    )


def flatten(state: DecoderState, layout: StateLayout, outputs: bool = False) -> tuple[Tensor, ...]:
    """The state's tensors in layout order; fields not yet set start at zero."""
    hidden = list(state.hidden) if isinstance(state.hidden, tuple) else [state.hidden]
    tensors = [*hidden, state.memory, state.mask]
    for name in layout.fields:
        value = getattr(state, name)
        tensors.append(value if value is not None else _zeros(name, state))
    tensors += [state.extra[key] for key in layout.extra_keys(outputs)]
    return tuple(tensors)


def _zeros(name: str, state: DecoderState) -> Tensor:
    """A zero start for a field the first step sets (weights/coverage (B, S), context (B, M))."""
    if name not in ZERO_STARTED:
        raise ValueError(f"the decoder sets state.{name} only after the first step")
    if name == "context":
        return state.memory.new_zeros(state.memory.size(0), state.memory.size(2))
    return state.memory.new_zeros(state.mask.shape)


def unflatten(
    tensors: tuple[Tensor, ...], layout: StateLayout, position: int, outputs: bool = False
) -> DecoderState:
    """A DecoderState from the flat tensors (a step's inputs, or its outputs)."""
    count = 2 if layout.lstm else 1
    hidden: Tensor | tuple[Tensor, Tensor] = (tensors[0], tensors[1]) if layout.lstm else tensors[0]
    memory, mask = tensors[count], tensors[count + 1]
    rest = list(tensors[count + 2 :])
    optional: dict[str, Any] = dict(zip(layout.fields, rest[: len(layout.fields)], strict=True))
    extra = dict(zip(layout.extra_keys(outputs), rest[len(layout.fields) :], strict=True))
    state = DecoderState(hidden, memory, mask, position=position, extra=extra)
    return replace(state, **optional)


class FlatModel(nn.Module):
    """The model's encode and step on flat tensors; both methods are traced into one module,
    so the weights are stored once."""

    def __init__(self, model: Seq2Seq, layout: StateLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        """(B, S) source ids, (B,) lengths → the flat initial state."""
        return flatten(self.model.encode(src, lengths), self.layout)

    def step(self, prev: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """(B,) previous tokens and the flat state → log-probabilities (B, V), next flat state."""
        # position is not an input: attention that reads it (local-m) cannot be traced, and
        # the export's verification refuses such models
        log_probs, after = self.model.step(prev, unflatten(state, self.layout, 0))
        return (log_probs, *flatten(after, self.layout, outputs=True))


def example_batch(vocab_size: int, lengths: list[int], first_id: int = 4) -> tuple[Tensor, Tensor]:
    """Random (B, S) source ids (no specials, padded with 0) and their (B,) lengths."""
    generator = torch.Generator().manual_seed(len(lengths))
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        src[row, :length] = torch.randint(first_id, vocab_size, (length,), generator=generator)
    return src, torch.tensor(lengths)
