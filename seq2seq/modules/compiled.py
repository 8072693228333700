"""Loops compiled by Numba, where it can be imported: compiling with a cache fallback, and the
thread split.

PyTorch's CPU ops each take one trip through memory and one dispatch; a loop compiled for this
CPU can do several of them per element in registers. Without Numba the callers run their
tensor code, which computes the same.

A kernel's compile flags belong in the kernel's own module: Numba's on-disk cache knows a
function by its bytecode and the hash of the file that defines it, not by its flags, so flags
kept elsewhere could change while stale compiled code kept being loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


def compile_loop(function: Callable[..., None], flags: dict[str, Any]) -> Callable[..., None]:
    """`numba.njit(**flags)(function)`; where `flags` ask for the on-disk cache and no folder for
    it is writable (a read-only install and home), compiled in memory instead."""
    from numba import njit

    try:
        compiled: Callable[..., None] = njit(**flags)(function)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if not flags.get("cache"):
            raise
        log.debug("compiling %s without Numba's cache: %s", function.__name__, exc)
        compiled = njit(**{**flags, "cache": False})(function)
    return compiled


def split_rows(kernel: Callable[..., None], rows: int, *arrays: object) -> None:
    """Run `kernel(*arrays, first, last)` over rows [0, rows), split across PyTorch's threads.

    Python threads, not a Numba threading layer: nothing depends on OpenMP or on fork safety,
    and several threads may call at once. An error in any part is raised here, after every
    part has ended (a thread's own error would otherwise only be printed, its rows unwritten).
    """
    parts = max(1, min(torch.get_num_threads(), rows))
    bounds = [rows * i // parts for i in range(parts + 1)]
    errors: list[BaseException] = []

    def run(first: int, last: int) -> None:
        try:
            kernel(*arrays, first, last)
        except BaseException as exc:
            errors.append(exc)

    helpers = [
        threading.Thread(target=run, args=(bounds[i], bounds[i + 1])) for i in range(1, parts)
    ]
    for helper in helpers:
        helper.start()
    run(bounds[0], bounds[1])  # the calling thread takes the first part
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]
