"""The factored additive score and its gradients as compiled loops (Numba), one pass per element.

The blocked tensor code in `additive_scores.py` walks each (b, t, S, A) block three times
forward (the multiply-add, the reciprocal, the product with v) and five times backward, each
op one trip through the cache, and PyTorch's elementwise ops reach about 2 G elements/s here.
A loop compiled for this CPU makes σ, multiplies and sums in registers, element by element:
on the matched training batches the score's forward and backward take about a tenth of the
blocked code's time. Backward also skips the (t, s) pairs whose score gradient is exactly
zero: padded keys and padded target steps.

The batch rows are split over PyTorch's thread count (`modules/compiled.py`). The first
compilation takes about a second; later processes load the cached code (compiled in memory
where no cache folder is writable). Without Numba `available()` is False and the blocked
tensor code runs.

Training uses the loops; decoding uses them only in a process that has loaded them already
(validation inside training): importing Numba costs a fresh `seq2seq translate` about 0.3 s,
more than the loops save a greedy search over the 922 test sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import Tensor

from seq2seq.modules.compiled import compile_loop, split_rows

DTYPES = (torch.float32, torch.float64)
# Kept here, not in compiled.py: Numba's cache keys on this file (see compiled.py).
# `cache`: compiled code is kept on disk (beside the package, or in Numba's user cache), so a
# later process loads it in about 0.1 s (`compile_loop` drops it where neither is writable).
# `nogil`: the loops run in parallel Python threads.
# Fast-math is limited to reassociation (sums vectorised in any order, as a BLAS dot product's),
# contraction and reciprocal estimates refined to float precision: no `nnan`/`ninf`, so a NaN
# still comes out as one. error_model "numpy": x / 0 is inf, not an exception whose check
# kept the loop from being vectorised (1.2 against 9.6 G elements/s).
FLAGS: dict[str, Any] = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"reassoc", "contract", "arcp"},
}


@cache
def _kernels() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """(forward, backward) compiled loops, or None when Numba cannot be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:  # an optional speed-up: the tensor code computes the same
        return None

    def forward(query_exp, key_exp, vector, scores, first, last):
        one = query_exp.dtype.type(1)
        zero = query_exp.dtype.type(0)
        for b in range(first, last):
            for t in range(query_exp.shape[1]):
                for s in range(key_exp.shape[1]):
                    total = zero
                    for a in range(query_exp.shape[2]):
                        total += vector[a] / (one + query_exp[b, t, a] * key_exp[b, s, a])
                    scores[b, t, s] = total

    # ∂/∂(q + k) = g v σ (1 − σ): v is left out here and applied once by the caller
    def backward(query_exp, key_exp, grad, grad_q, grad_k, grad_v, first, last):
        one = query_exp.dtype.type(1)
        for b in range(first, last):
            for t in range(query_exp.shape[1]):
                for s in range(key_exp.shape[1]):
                    g = grad[b, t, s]
                    if g == 0:  # masked keys, padded steps: nothing flows back
                        continue
                    for a in range(query_exp.shape[2]):
                        squashed = one / (one + query_exp[b, t, a] * key_exp[b, s, a])
                        grad_v[b, a] += g * squashed
                        inner = g * squashed * (one - squashed)
                        grad_q[b, t, a] += inner
                        grad_k[b, s, a] += inner

    return compile_loop(forward, FLAGS), compile_loop(backward, FLAGS)


def available(*tensors: Tensor, load: bool = True) -> bool:
    """True when the compiled loops can take these CPU tensors (float32/float64, one dtype).

    With `load=False` only loops this process has loaded already count (decoding's rule)."""
    dtype = tensors[0].dtype
    if dtype not in DTYPES or any(t.dtype != dtype or t.device.type != "cpu" for t in tensors):
        return False
    if not load and _kernels.cache_info().currsize == 0:
        return False
    return _kernels() is not None


def scores(query_exp: Tensor, key_exp: Tensor, vector: Tensor) -> Tensor:
    """Σₐ vₐ / (1 + e⁻ᵠ e⁻ᵏ): (B, T, A) e⁻ᵠ, (B, S, A) e⁻ᵏ, (A,) v → (B, T, S)."""
    forward, _ = _kernels()  # type: ignore[misc]
    query_exp, key_exp, vector = (t.detach().contiguous() for t in (query_exp, key_exp, vector))
    out = query_exp.new_empty(query_exp.size(0), query_exp.size(1), key_exp.size(1))
    arrays = (t.numpy() for t in (query_exp, key_exp, vector, out))
    split_rows(forward, out.size(0), *arrays)
    return out


def score_grads(
    query_exp: Tensor, key_exp: Tensor, vector: Tensor, grad_scores: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of `scores` for the queries q, the keys k and v, given ∂L/∂scores."""
    _, backward = _kernels()  # type: ignore[misc]
    query_exp, key_exp, grad = (t.detach().contiguous() for t in (query_exp, key_exp, grad_scores))
    grad_q, grad_k = torch.zeros_like(query_exp), torch.zeros_like(key_exp)
    grad_v = query_exp.new_zeros(query_exp.size(0), query_exp.size(2))  # one row per sentence
    arrays = (t.numpy() for t in (query_exp, key_exp, grad, grad_q, grad_k, grad_v))
    split_rows(backward, grad.size(0), *arrays)
    vector = vector.detach()
    return grad_q.mul_(vector), grad_k.mul_(vector), grad_v.sum(0)
