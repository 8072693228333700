"""What the loop feeds on: each epoch's token-budget batches in one global order (fixed by the
seed and the epoch, whatever the number of processes), cut into updates of processes ×
`train.accumulate` batches, and each rank's disjoint share of an update."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

from seq2seq.data.batching import token_batches

T = TypeVar("T")
Pairs = tuple[list[list[int]], list[list[int]]]  # source ids (ending in </s>), target ids


class Feed(Protocol):
    """A training set as the loop sees it."""

    def epoch(self, epoch: int, start: int) -> Iterator[Any]:
        """The epoch's global batches, from batch number `start` on."""
        ...

    def tokens(self, batch: Any) -> int:
        """Target tokens of a batch (</s> included): the loss is normalised by their sum."""
        ...

    def load(self, batch: Any) -> Pairs:
        """The ids of a batch's examples."""
        ...

    def batches_per_epoch(self) -> int | None:
        """How many batches an epoch has (None when it is not known in advance)."""
        ...


class TakesExamples(Protocol):
    """Examples held in memory or memory-mapped from the cache."""

    def __len__(self) -> int: ...

    def lengths(self) -> tuple[Sequence[int], Sequence[int]]:
        """Source and target lengths of every example."""
        ...

    def take(self, indices: list[int]) -> Pairs:
        """The ids of the examples at `indices`."""
        ...


class IndexedFeed:
    """Batches of example indices over a set with known lengths (in memory or cached)."""

    def __init__(self, examples: TakesExamples, batch_tokens: int, seed: int) -> None:
        self.examples, self.batch_tokens, self.seed = examples, batch_tokens, seed
        self.src_len, self.tgt_len = examples.lengths()
        self._count: int | None = None

    def epoch(self, epoch: int, start: int) -> Iterator[list[int]]:
        """The epoch's batches of indices, from batch `start` on."""
        batches = token_batches(self.src_len, self.tgt_len, self.batch_tokens, self.seed, epoch)
        return iter(batches[start:])

    def tokens(self, batch: list[int]) -> int:
        """Target tokens of the batch, </s> included."""
        return sum(self.tgt_len[i] + 1 for i in batch)

    def load(self, batch: list[int]) -> Pairs:
        """The examples' ids."""
        return self.examples.take(batch)

    def batches_per_epoch(self) -> int:
        """Batches in an epoch (the same count for every epoch, up to packing)."""
        if self._count is None:
            self._count = len(token_batches(self.src_len, self.tgt_len, self.batch_tokens, 0, 0))
        return self._count


def updates(batches: Iterator[T], size: int) -> Iterator[list[T]]:
    """Consecutive groups of `size` batches; the last group of an epoch may be smaller."""
    group: list[T] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def share(group: Sequence[T], rank: int, world: int) -> list[tuple[T, float]]:
    """This rank's micro-batches of an update, each with its weight in the loss.

    Rank r takes batches r, r + world, r + 2·world, … so the ranks' shares are disjoint and
    together are the whole group. Every rank runs the same number of micro-steps (the
    collectives must match); a rank short of a batch at the end of an epoch repeats the
    group's first batch with weight 0, which adds nothing to the gradient.
    """
    steps = math.ceil(len(group) / world)
    mine = []
    for micro in range(steps):
        index = micro * world + rank
        mine.append((group[index], 1.0) if index < len(group) else (group[0], 0.0))
    return mine
