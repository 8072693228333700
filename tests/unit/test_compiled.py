"""modules/compiled.py: compiling without a writable cache folder, and errors from split parts."""

from __future__ import annotations

import threading

import pytest
import torch

from seq2seq.modules import compiled

numba = pytest.importorskip("numba")


def test_no_writable_cache_folder_compiles_in_memory(monkeypatch) -> None:
    """Numba refuses `cache=True` when no folder for its cache is writable (a read-only install
    and home); the loop is then compiled without the cache instead of failing training."""
    asked: list[dict] = []
    real_njit = numba.njit

    def njit(*args, **flags):  # Numba calls it too, positionally, for its own helpers
        if args:
            return real_njit(*args, **flags)
        asked.append(flags)
        if flags.get("cache") or flags.get("boundscheck"):  # boundscheck: a failure of its own
            raise RuntimeError("cannot cache function 'double': no locator available for file")
        return real_njit(**flags)

    monkeypatch.setattr(numba, "njit", njit)

    def double(values, first, last):
        for i in range(first, last):
            values[i] *= 2.0

    loop = compiled.compile_loop(double, {"nogil": True, "cache": True})
    values = torch.ones(5)
    compiled.split_rows(loop, 5, values.numpy())
    assert torch.equal(values, torch.full((5,), 2.0))
    assert [flags.get("cache") for flags in asked] == [True, False]
    with pytest.raises(RuntimeError, match="no locator"):  # without a cache asked: not hidden
        compiled.compile_loop(double, {"nogil": True, "boundscheck": True})


def test_an_error_in_any_part_is_raised_after_every_part_ends(monkeypatch) -> None:
    """A helper thread's error reaches the caller (its rows would be left unwritten), and the
    other parts still run to their end first."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    done: list[tuple[int, int]] = []
    lock = threading.Lock()

    def kernel(first: int, last: int) -> None:
        if first == 2:
            raise ValueError("part two failed")
        with lock:
            done.append((first, last))

    with pytest.raises(ValueError, match="part two failed"):
        compiled.split_rows(kernel, 6)
    assert sorted(done) == [(0, 2), (4, 6)]
    done.clear()
    compiled.split_rows(lambda first, last: done.append((first, last)), 2)  # fewer rows
    assert sorted(done) == [(0, 1), (1, 2)]
