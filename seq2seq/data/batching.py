"""Batches: token-budget batching from length buckets, padding, masks and target shifting."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """Padded tensors for one batch; `indices` are the examples' positions in their dataset."""

    src: Tensor  # (B, S) source ids ending in </s>, padded
    src_lengths: Tensor  # (B,)
    tgt_in: Tensor | None  # (B, T) <s> + target, padded
    tgt_out: Tensor | None  # (B, T) target + </s>, padded
    indices: list[int]

    @property
    def target_tokens(self) -> int:
        """Real (non-pad) target tokens, </s> included."""
        return 0 if self.tgt_out is None else int((self.tgt_out != 0).sum())

    def pin_memory(self) -> Batch:
        """The same batch in page-locked memory, so copies to a GPU can run asynchronously."""

        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        return Batch(
            self.src.pin_memory(),
            self.src_lengths.pin_memory(),
            pin(self.tgt_in),
            pin(self.tgt_out),
            self.indices,
        )

    def to(self, device: torch.device) -> Batch:
        """The same batch on `device` (non-blocking where the source is pinned)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths.to(device, non_blocking=True),
            move(self.tgt_in),
            move(self.tgt_out),
            self.indices,
        )


def pad(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> Tensor:
    """Right-pad id lists into a (B, max_len) long tensor."""
    width = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), max(width, 1)), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def make_batch(
    source: Sequence[Sequence[int]],
    target: Sequence[Sequence[int]] | None,
    indices: list[int],
    bos: int = 2,
    eos: int = 3,
    pad_id: int = 0,
) -> Batch:
    """Pad the chosen examples; the target is shifted into decoder input and expected output."""
    src = pad([source[i] for i in indices], pad_id)
    lengths = torch.tensor([len(source[i]) for i in indices], dtype=torch.long)
    if target is None:
        return Batch(src, lengths, None, None, indices)
    tgt_in = pad([[bos, *target[i]] for i in indices], pad_id)
    tgt_out = pad([[*target[i], eos] for i in indices], pad_id)
    return Batch(src, lengths, tgt_in, tgt_out, indices)


def token_batches(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    batch_tokens: int,
    seed: int,
    epoch: int,
    bucket_batches: int = 100,
) -> list[list[int]]:
    """One epoch's batches of example indices, the same for the same (seed, epoch).

    Examples are shuffled, cut into buckets of about `bucket_batches` batches, sorted by length
    inside each bucket (little padding), packed so that sentences × longest side ≤ batch_tokens,
    and the batches shuffled again. A longer example than the budget gets a batch of its own.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(src_lengths)))
    rng.shuffle(order)
    cost = [max(src_lengths[i], tgt_lengths[i] + 1) for i in range(len(src_lengths))]
    mean = max(1.0, sum(cost) / max(1, len(cost)))
    bucket_size = max(1, int(bucket_batches * batch_tokens / mean))
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        bucket = sorted(order[start : start + bucket_size], key=lambda i: (cost[i], i))
        current: list[int] = []
        longest = 0
        for i in bucket:
            wider = max(longest, cost[i])
            if current and wider * (len(current) + 1) > batch_tokens:
                batches.append(current)
                current, wider = [], cost[i]
            current.append(i)
            longest = wider
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def sentence_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of up to `batch_size` indices of similar length, for decoding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
