"""Loops compiled by Numba, where it can be imported: the compile flags and the thread split.

PyTorch's CPU ops each take one trip through memory and one dispatch; a loop compiled for this
CPU can do several of them per element in registers. Such loops serve training only (a fresh
decoding process would pay about 0.3 s to import Numba); without Numba the callers run their
tensor code, which computes the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

# `cache`: compiled code is kept on disk (beside the package, or in Numba's user cache), so a
# later process loads it in about 0.1 s. `nogil`: the loops run in parallel Python threads.
# Fast-math is limited to reassociation (sums vectorised in any order, as a BLAS dot product's),
# contraction and reciprocal estimates refined to float precision: no `nnan`/`ninf`, so a NaN
# still comes out as one. error_model "numpy": x / 0 is inf, not an exception whose check
# kept a loop from being vectorised (1.2 against 9.6 G elements/s).
FLAGS: dict[str, Any] = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"reassoc", "contract", "arcp"},
}


def njit() -> Callable[..., Any] | None:
    """Numba's `njit` with FLAGS applied, or None when Numba cannot be imported."""
    try:
        from numba import njit as numba_njit
    except ImportError:  # an optional speed-up: the tensor code computes the same
        return None
    return numba_njit(**FLAGS)


def split_rows(kernel: Callable[..., None], rows: int, *arrays: object) -> None:
    """Run `kernel(*arrays, first, last)` over rows [0, rows), split across PyTorch's threads.

    Python threads, not a Numba threading layer: nothing depends on OpenMP or on fork safety,
    and several threads may call at once."""
    parts = max(1, min(torch.get_num_threads(), rows))
    bounds = [rows * i // parts for i in range(parts + 1)]
    helpers = [
        threading.Thread(target=kernel, args=(*arrays, bounds[i], bounds[i + 1]))
        for i in range(1, parts)
    ]
    for helper in helpers:
        helper.start()
    kernel(*arrays, bounds[0], bounds[1])  # the calling thread takes the first part
    for helper in helpers:
        helper.join()
