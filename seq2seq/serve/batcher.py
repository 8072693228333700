"""One worker thread owns the model; concurrent requests queue for it and are decoded together.

Requests that arrive while the model is busy wait in a bounded queue. When the worker is free it
takes the oldest request and, with it, the following requests that use the same search, up to a
number of sentences, and decodes them as one `translate_batch` call (micro-batching). Each
request's translations are cut back out of the batch by position, so results never mix; a
sentence decodes the same in a batch as alone (tested in the search tests).
"""

from __future__ import annotations

import logging
import queue
import threading
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

    def __init__(self, loaded: Loaded, batch_sentences: int = 64, max_pending: int = 256) -> None:
        self.loaded = loaded
        self.batch_sentences = batch_sentences
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_pending)
        self.held: Job | None = None  # taken from the queue but not batchable with the last group
        self.stopping = False  # close() was called: finish what was queued before it
        self.batches = 0  # decoding calls made (for tests and logs)
        self.worker = threading.Thread(target=self._run, name="seq2seq-model", daemon=True)
        self.worker.start()

    def submit(self, texts: list[str], search: Any, key: str, keep_attention: bool) -> Job:
        """Queue texts for decoding; the job's future gets their translations in order."""
        job = Job(texts, search, key, keep_attention)
        try:
            self.jobs.put_nowait(job)
        except queue.Full as exc:
            raise Busy(f"{self.jobs.maxsize} requests are already waiting; retry shortly") from exc
        return job

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        self.jobs.put(None)
        self.worker.join(timeout=60)

    def _next_group(self) -> list[Job] | None:
        """The oldest job and the queued jobs right after it that can share its batch."""
        if self.held is not None:
            first: Job | None = self.held
            self.held = None
        else:
            first = None if self.stopping else self.jobs.get()
        if first is None:
            return None
        group, count = [first], len(first.texts)
        while count < self.batch_sentences:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.stopping = True
                break
            if job.key != first.key or count + len(job.texts) > self.batch_sentences:
                self.held = job  # first in line for the next group
                break
            group.append(job)
            count += len(job.texts)
        return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            self._decode(group)

    def _decode(self, group: list[Job]) -> None:
        """Decode a group as one batch and hand each job its slice."""
        texts = [text for job in group for text in job.texts]
        try:
            results = translate_batch(
                self.loaded,
                group[0].search,
                texts,
                batch_size=self.batch_sentences,
                keep_attention=any(job.keep_attention for job in group),
            )
        except Exception as exc:  # every waiting request must hear about it
            log.exception("decoding failed")
            for job in group:
                job.future.set_exception(exc)
            return
        self.batches += 1
        start = 0
        for job in group:
            job.future.set_result(results[start : start + len(job.texts)])
            start += len(job.texts)
