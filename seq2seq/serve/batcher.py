"""One worker thread owns the model; concurrent requests queue for it and are decoded together.

Requests that arrive while the model is busy wait (up to a limit, then the server answers busy).
When the worker is free it takes the oldest waiting request and, with it, the later ones that use
the same search, up to a number of sentences, and decodes them as one `translate_batch` call
(micro-batching); requests with other options keep their place in line. Each
request's translations are cut back out of the batch by position, so results never mix; a
sentence decodes the same in a batch as alone (tested in the search tests). When a shared batch
fails, its requests are decoded one by one, so only the request that causes the failure gets it;
a request whose client went away (its future cancelled) is skipped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from seq2seq.bundle import Loaded
from seq2seq.inference import Translation, translate_batch

log = logging.getLogger(__name__)


class Busy(Exception):  # noqa: N818 - a state, answered with 503
    """The queue of waiting requests is full."""


@dataclass
class Job:
    """One request waiting for the model."""

    texts: list[str]
    search: Any  # a built search object
    key: str  # requests with the same key can share a batch
    keep_attention: bool
    future: Future[list[Translation]] = field(default_factory=Future)


class Batcher:
    """Feeds queued jobs to the model from a single worker thread."""

    def __init__(
        self, loaded: Loaded, batch_sentences: int = 64, max_pending: int = 256, start: bool = True
    ) -> None:
        self.loaded = loaded
        self.batch_sentences = batch_sentences
        self.max_pending = max_pending
        self.jobs: queue.Queue[Job | None] = queue.Queue()  # None: stop
        self.waiting: deque[Job] = deque()  # taken off the queue by the worker, oldest first
        self.stopping = False  # close() was called: finish what was queued before it
        self.batches = 0  # decoding calls made (for tests and logs)
        self.worker = threading.Thread(target=self._run, name="seq2seq-model", daemon=True)
        if start:  # tests drive _next_group/_decode by hand instead
            self.worker.start()

    def pending(self) -> int:
        """Requests waiting for the model."""
        return self.jobs.qsize() + len(self.waiting)

    def submit(self, texts: list[str], search: Any, key: str, keep_attention: bool) -> Job:
        """Queue texts for decoding; the job's future gets their translations in order."""
        if self.pending() >= self.max_pending:
            raise Busy(f"{self.max_pending} requests are already waiting; retry shortly")
        job = Job(texts, search, key, keep_attention)
        self.jobs.put(job)
        return job

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        self.jobs.put(None)
        if self.worker.is_alive():
            self.worker.join(timeout=60)

    def _collect(self) -> None:
        """Move queued jobs to `waiting`; wait for one when there is nothing to do."""
        block = not self.waiting and not self.stopping
        while True:
            try:
                job = self.jobs.get(block=block)
            except queue.Empty:
                return
            block = False
            if job is None:
                self.stopping = True
            else:
                self.waiting.append(job)

    def _next_group(self) -> list[Job] | None:
        """The oldest waiting job and the later ones with the same search that fit its batch;
        None when stopping with nothing left."""
        self._collect()
        if not self.waiting:
            return None
        key = self.waiting[0].key
        group: list[Job] = []
        rest: deque[Job] = deque()
        count = 0
        for job in self.waiting:
            if job.key == key and (not group or count + len(job.texts) <= self.batch_sentences):
                group.append(job)
                count += len(job.texts)
            else:
                rest.append(job)
        self.waiting = rest
        return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            self._decode(group)

    def _decode(self, group: list[Job]) -> None:
        """Decode a group as one batch and hand each job its slice; a job whose request went
        away (its future cancelled) is skipped."""
        live = [job for job in group if job.future.set_running_or_notify_cancel()]
        if live:
            self._answer(live)

    def _answer(self, group: list[Job]) -> None:
        texts = [text for job in group for text in job.texts]
        try:
            results = translate_batch(
                self.loaded,
                group[0].search,
                texts,
                batch_size=self.batch_sentences,
                keep_attention=any(job.keep_attention for job in group),
            )
        except Exception as exc:
            if len(group) > 1:  # one request's texts may be the cause: the others must not fail
                for job in group:
                    self._answer([job])
                return
            log.exception("decoding failed")
            group[0].future.set_exception(exc)
            return
        self.batches += 1
        start = 0
        for job in group:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)
