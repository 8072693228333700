"""Decoding batches in forked worker processes of one thread each.

A decoding step is a chain of small operations that intra-op threads split poorly. On 2 cores,
the benchmark's test set took 6.17 s with beam 5 in 2 processes × 1 thread, where 1 process ×
2 threads took 7.66 s; greedy took 1.83 s against 2.01. Workers are forked after the model is
loaded, so they share its weights (copy-on-write) and start in milliseconds. Each one returns
its batch's hypotheses pickled by value (tensors through a pipe, not shared file descriptors).

Every worker runs one thread: PyTorch's OpenMP runtime (GNU libgomp) hangs in a forked child
that starts a parallel region after the parent has run one, which loading a model does. A worker
that dies (killed, out of memory) ends the run with an error instead of a hang, and workers end
with their parent, however it ends.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
from torch import nn

from seq2seq.errors import Seq2SeqError

MAX_AUTO = 4  # "auto" uses workers up to here: measured on 2 cores; each holds a search's memory
PR_SET_PDEATHSIG = 1  # linux/prctl.h

_job: tuple[Any, Any] | None = None  # a worker's model and search, set when it starts


def auto_workers(device: torch.device | str) -> int:
    """Workers for `--workers auto`: one per CPU thread with 2 to MAX_AUTO threads where
    processes can be forked; otherwise 0 (decode in this process with its threads)."""
    if torch.device(device).type != "cpu" or not can_fork():
        return 0
    threads = torch.get_num_threads()
    return threads if 2 <= threads <= MAX_AUTO else 0


def can_fork() -> bool:
    """Linux only (macOS forks unsafely, Windows not at all), and not from a daemonic process,
    which may not have children."""
    return sys.platform.startswith("linux") and not multiprocessing.current_process().daemon


class DecodeWorkers:
    """A pool of forked one-thread processes decoding batches with one model and search; a
    context manager. Made after the model is loaded."""

    def __init__(self, model: Any, search: Any, workers: int):
        if workers < 2:
            raise ValueError(f"a pool needs at least 2 workers, got {workers}")
        self.model, self.search, self.workers = model, search, workers
        if isinstance(model, nn.Module):  # before the fork, so that the workers share one copy
            for module in model.modules():
                prepare = getattr(module, "prepare_decoding", None)
                if prepare is not None:
                    prepare()
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(model, search, os.getpid()),  # inherited by the fork, not pickled
        )

    def map(
        self, batches: Sequence[Sequence[Sequence[int]]], keep_attention: bool = False
    ) -> Iterator[list[Any]]:
        """Each batch's (source id lists) hypothesis lists, in batch order.

        The largest batches go first, so that no worker starts a long batch while the others
        run out of work: length-sorted batches in order left one worker on the longest batch
        for the last second of the test set."""
        futures: dict[int, Future[bytes]] = {}
        try:
            for index in sorted(range(len(batches)), key=lambda i: -_cost(batches[i])):
                futures[index] = self._pool.submit(_decode, (batches[index], keep_attention))
            for index in range(len(batches)):
                yield pickle.loads(futures[index].result())
        except BrokenProcessPool as exc:
            raise Seq2SeqError(
                "a decoding worker died (killed, or out of memory?); try --workers 0 or a smaller "
                "--batch-size"
            ) from exc

    def close(self, stop_now: bool = False) -> None:
        """Stop the workers; batches not started are dropped, and with `stop_now` (an error or
        Ctrl-C) running ones too."""
        if stop_now:
            # ProcessPoolExecutor has no public way to end running work before Python 3.14
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DecodeWorkers:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(stop_now=kind is not None)


def _cost(sources: Sequence[Sequence[int]]) -> int:
    """A batch's work, roughly: sentences × the longest source (outputs follow its length)."""
    return len(sources) * max((len(ids) for ids in sources), default=0)


def _start_worker(model: Any, search: Any, parent: int) -> None:
    global _job
    _job = (model, search)
    model.eval()
    # end with the parent even when it is killed; the check closes the race with its death
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent stops us
    torch.set_num_threads(1)


def _decode(task: tuple[Sequence[Sequence[int]], bool]) -> bytes:
    from seq2seq.inference import decode_batch  # inference imports this module's types

    assert _job is not None, "decoding worker started without a job"
    (model, search), (sources, keep_attention) = _job, task
    try:
        hypotheses = decode_batch(model, search, sources, range(len(sources)), keep_attention)
    except Exception as exc:  # sent back whole: some exceptions cannot be rebuilt from a pickle
        raise Seq2SeqError(f"decoding failed: {type(exc).__name__}: {exc}") from None
    return pickle.dumps(hypotheses, protocol=pickle.HIGHEST_PROTOCOL)
