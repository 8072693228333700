"""The additive score Σₐ vₐ σ(qₐ + kₐ) for every (query, key) pair, computed in cache-sized blocks.

Written whole, the (B, T, S, A) sum behind these scores is the largest tensor of a training step
(a 19 × 100 × 100 × 256 batch makes 194 MB), and autograd keeps σ of it and makes two more of
its size in the backward pass, each a trip through main memory. Here each block of query rows
is summed, squashed and reduced while it sits in the CPU's cache; the backward pass makes σ of
a block again rather than keeping it. Values and gradients equal the plain formula's
(`reference_scores`, which tracing for export also uses: its shapes must not fix a loop count).

σ itself is made without an exponential per element: σ(q + k) = 1 / (1 + e⁻ᵠ e⁻ᵏ), where e⁻ᵠ
is taken once per query row and e⁻ᵏ once per key (and, in decoding, once per batch rather than
per step). A block then costs a multiply-add and a reciprocal: on an AVX-512 Xeon at one thread,
82 µs per 262,144 elements against 126 for the sum and `sigmoid_`.

Where Numba is installed, the factored score and its gradients run as compiled loops instead
(`additive_kernels.py`: one pass per element, about a tenth of the blocked code's time); the
blocked code serves the rest (bf16 under autocast, unbounded values, decoding in a fresh process).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from seq2seq.modules.attention import additive_kernels
from seq2seq.modules.eager import eager_cpu

aten = torch.ops.aten
BLOCK_ELEMENTS = 1 << 18  # 1 MB of float32 per block: within a core's L2 cache on current CPUs
# |q|, |k| ≤ 40: e^±40 and the products of two such stay normal float32 numbers, so the
# factored σ equals σ(q + k) to rounding; beyond it (or with NaN) σ is taken of the sum itself
FACTOR_BOUND = 40.0


def reference_scores(queries: Tensor, keys: Tensor, energy: nn.Module) -> Tensor:
    """(B, T, A) queries, (B, S, A) keys, energy A → 1 → (B, T, S), the whole sum at once."""
    # σ in place: autograd needs only σ's output, not the sum (one (B, T, S, A) tensor less)
    return energy(torch.sigmoid_(queries[:, :, None, :] + keys[:, None, :, :])).squeeze(-1)


def _blocks(batch: int, steps: int, length: int, width: int) -> Iterator[tuple[slice, slice]]:
    """(batch rows, query steps) slices whose (b, t, S, A) sums hold about BLOCK_ELEMENTS."""
    rows = max(1, BLOCK_ELEMENTS // max(1, length * width))  # query rows per block
    if steps >= rows:  # long targets: part of one sentence's steps per block
        for b in range(batch):
            for t in range(0, steps, rows):
                yield slice(b, b + 1), slice(t, t + rows)
    else:  # single steps (decoding) or short targets: several sentences per block
        per_block = max(1, rows // max(1, steps))
        for b in range(0, batch, per_block):
            yield slice(b, b + per_block), slice(0, steps)


class _Factors(NamedTuple):
    """e⁻ᵠ (B, T, A) and e⁻ᵏ (B, S, A), whose products give σ(q + k) = 1 / (1 + e⁻ᵠ e⁻ᵏ)."""

    queries: Tensor
    keys: Tensor


# the 1 of 1 + e⁻ᵠ e⁻ᵏ, for the two dtypes that are factored (`_negative_exp`)
_ONES = {dtype: torch.ones((), dtype=dtype) for dtype in (torch.float32, torch.float64)}


def _bounded(values: Tensor) -> bool:
    """Every value within ±FACTOR_BOUND (False for NaN)."""
    low, high = torch.aminmax(values)
    return bool(low >= -FACTOR_BOUND) and bool(high <= FACTOR_BOUND)


def _negative_exp(values: Tensor) -> Tensor | None:
    """e^−values when the factored σ is exact to rounding for them, else None."""
    if values.dtype not in (torch.float32, torch.float64) or not values.numel():
        return None
    return torch.neg(values).exp_() if _bounded(values) else None


# decoding calls the scores once per step with the same keys: e⁻ᵏ is kept per energy layer
# (held weakly: it goes with its module) and used while the keys tensor lives unchanged; the
# last batch's stays until the layer's next call (64 × 100 × 256 floats: 6.5 MB)
_key_factors: weakref.WeakKeyDictionary[nn.Module, tuple[Any, int, Tensor | None]] = (
    weakref.WeakKeyDictionary()
)


def _cached_key_factor(keys: Tensor, owner: nn.Module) -> Tensor | None:
    """`_negative_exp(keys)`, made again only when `keys` is another tensor or changed in place.

    Writes through `.data` or NumPy move no version counter and would go unseen; tensors made in
    inference mode have no counter at all, so theirs is made at every call."""
    if keys.is_inference():
        return _negative_exp(keys)
    version = keys._version  # before the factor: a later in-place change must not look seen
    entry = _key_factors.get(owner)
    if entry is not None and entry[0]() is keys and entry[1] == version:
        return entry[2]
    factor = _negative_exp(keys)
    _key_factors[owner] = (weakref.ref(keys), version, factor)
    return factor


def _factors(queries: Tensor, keys: Tensor, key_factor: Tensor | None) -> _Factors | None:
    """The factors of σ(q + k) when both sides are within bounds, else None."""
    if key_factor is None:
        return None
    query_factor = _negative_exp(queries)
    return None if query_factor is None else _Factors(query_factor, key_factor)


def _squashed(
    queries: Tensor, keys: Tensor, rows: slice, steps: slice, factors: _Factors | None
) -> Tensor:
    """σ(q + k) of one block, (b, t, S, A)."""
    if factors is None:
        return torch.sigmoid_(queries[rows, steps, None, :] + keys[rows, None, :, :])
    query_exp, key_exp = factors.queries[rows, steps, None, :], factors.keys[rows, None, :, :]
    return torch.addcmul(_ONES[query_exp.dtype], query_exp, key_exp).reciprocal_()


def _blocked_scores(
    queries: Tensor, keys: Tensor, energy: Tensor, factors: _Factors | None, load: bool = True
) -> Tensor:
    if factors is not None and additive_kernels.available(*factors, energy, load=load):
        return additive_kernels.scores(*factors, energy)
    B, T, A = queries.shape
    scores = queries.new_empty(B, T, keys.size(1))
    for rows, steps in _blocks(B, T, keys.size(1), A):
        scores[rows, steps] = _squashed(queries, keys, rows, steps, factors) @ energy
    return scores


class _BlockedAdditiveScores(torch.autograd.Function):
    """Forward and backward of the additive score, block by block, σ made again in backward."""

    @staticmethod
    def forward(ctx: Any, queries: Tensor, keys: Tensor, energy: Tensor) -> Tensor:
        factors = _factors(queries, keys, _negative_exp(keys))
        exps = (factors.queries, factors.keys) if factors is not None else (None, None)
        ctx.save_for_backward(queries, keys, energy, *exps)
        return _blocked_scores(queries, keys, energy, factors)

    @staticmethod
    @once_differentiable  # σ is rebuilt from constants: no graph of the backward pass
    def backward(ctx: Any, grad_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        queries, keys, energy, query_exp, key_exp = ctx.saved_tensors
        factors = None if key_exp is None else _Factors(query_exp, key_exp)  # saved together
        if factors is not None and additive_kernels.available(*factors, energy, grad_scores):
            return additive_kernels.score_grads(*factors, energy, grad_scores)
        B, T, A = queries.shape
        grad_queries = torch.empty_like(queries)
        # sums over blocks stay in float32 when the inputs are bf16/fp16 (autocast): rounding
        # the running sum after each of ~200 blocks lost a percent of the energy gradient
        wide = torch.promote_types(keys.dtype, torch.float32)
        grad_keys = torch.zeros_like(keys, dtype=wide)
        grad_energy = torch.zeros_like(energy, dtype=wide)
        for rows, steps in _blocks(B, T, keys.size(1), A):
            squashed = _squashed(queries, keys, rows, steps, factors)  # s, (b, t, S, A)
            grad = grad_scores[rows, steps]  # (b, t, S)
            grad_energy += grad.reshape(-1) @ squashed.reshape(-1, A)
            # ∂/∂(q + k) = g v s (1 − s); v is a factor of every sum, applied once after them.
            # g s (1 − s) in one pass, written over s (its last reader was the line above)
            inner = aten.sigmoid_backward.grad_input(
                grad[..., None].expand_as(squashed), squashed, grad_input=squashed
            )
            grad_queries[rows, steps] = inner.sum(2)
            grad_keys[rows] += inner.sum(1)
        grad_queries.mul_(energy)
        grad_keys.mul_(energy)
        return grad_queries, grad_keys.to(keys.dtype), grad_energy.to(energy.dtype)


def additive_scores(queries: Tensor, keys: Tensor, energy: nn.Linear) -> Tensor:
    """Σₐ vₐ σ(q + k): (B, T, A) queries, (B, S, A) keys, energy v (A → 1) → (B, T, S) scores.

    Blocked on the CPU, where memory traffic is the cost. The whole sum at once elsewhere: on
    a GPU (its bandwidth makes the sum cheap, a loop of small kernels would not be), under
    tracing or compiling (the block loop's count depends on the shapes), when an int8 export
    has replaced the energy layer (its weight is packed), and for an energy layer other than
    A → 1 without bias.
    """
    weight = energy.weight
    if (
        not eager_cpu(queries)
        or not isinstance(weight, Tensor)
        or weight.size(0) != 1
        or energy.bias is not None
    ):
        return reference_scores(queries, keys, energy)
    dtype = torch.promote_types(queries.dtype, keys.dtype)
    queries, keys, vector = queries.to(dtype), keys.to(dtype), weight[0].to(dtype)  # as autocast
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys, vector))
    if not needs_grad:  # decoding: no graph; e⁻ᵏ kept from step to step
        factors = _factors(queries, keys, _cached_key_factor(keys, energy))
        return _blocked_scores(queries, keys, vector, factors, load=False)
    return _BlockedAdditiveScores.apply(queries, keys, vector)
