"""Rules applied to next-token log-probabilities before a search picks: banned specials,
length limits, no repeated n-grams. Each takes and returns (N, V) log-probabilities."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_limits(max_length: int, max_ratio: float | None, min_length: int = 0) -> None:
    """Reject limits no output can meet (a ValueError becomes a recipe error with its path)."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if max_ratio is not None and max_ratio <= 0:
        raise ValueError(f"max_ratio must be positive (or null), got {max_ratio}")
    if min_length < 0:
        raise ValueError(f"min_length must not be negative, got {min_length}")


def length_limits(lengths: Tensor, length: int, ratio: float | None, slack: int = 5) -> Tensor:
    """Per-sentence limits (B,) on output pieces before </s>: `length`, or ratio × source
    length + slack when smaller."""
    limits = torch.full_like(lengths, length)
    if ratio is not None:
        by_ratio = (lengths.float() * ratio).ceil().long() + slack
        limits = torch.minimum(limits, by_ratio)
    return limits


def constrained_step(
    model: Any, prev: Tensor, state: Any, step: int, min_len: Tensor, max_len: Tensor
) -> tuple[Tensor, Any]:
    """One decoder step of every search: log-probabilities (N, V) of the next piece with
    <pad> and <s> banned and the length limits applied, and the next state."""
    sp = model.specials
    log_probs, state = model.step(prev, state)
    log_probs = ban_specials(log_probs, sp.pad, sp.bos)
    return apply_length(log_probs, step, min_len, max_len, sp.eos), state


def ban_specials(log_probs: Tensor, *ids: int) -> Tensor:
    """<pad> and <s> are never outputs."""
    log_probs[:, list(ids)] = float("-inf")
    return log_probs


def apply_length(
    log_probs: Tensor, step: int, min_len: Tensor, max_len: Tensor, eos: int
) -> Tensor:
    """Block </s> before `min_len` pieces; allow only </s> once `max_len` pieces are out.

    `step` is the number of pieces already produced; min_len and max_len are (N,).
    """
    early = step < min_len
    if bool(early.any()):
        log_probs[early, eos] = float("-inf")
    late = step >= max_len
    if bool(late.any()):
        keep = log_probs[late, eos].clone()
        log_probs[late] = float("-inf")
        log_probs[late, eos] = keep
    return log_probs


def block_repeats(log_probs: Tensor, history: Tensor, n: int) -> Tensor:
    """Forbid tokens that would repeat an n-gram already in each row's (N, t) history."""
    t = history.size(1)
    if n <= 0 or t < max(n, 1):  # no earlier n-gram to repeat yet
        return log_probs
    if n == 1:
        return log_probs.scatter(1, history, float("-inf"))
    grams = history.unfold(1, n, 1)  # (N, t - n + 1, n)
    tail = history[:, t - n + 1 :]  # (N, n - 1): the prefix the next token would extend
    matches = (grams[:, :, :-1] == tail[:, None, :]).all(-1)  # (N, t - n + 1)
    banned = grams[:, :, -1].masked_fill(~matches, 0)  # id 0 (<pad>) is banned anyway
    return log_probs.scatter(1, banned, float("-inf"))
