"""Decoding in forked worker processes: the same hypotheses, in order; a dead worker is an
error, not a hang."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.inference import decode_ids
from seq2seq.modules import projection, rnn_step
from seq2seq.search.beam import BeamSearch
from seq2seq.search.hypotheses import Hypothesis
from seq2seq.workers import MAX_AUTO, DecodeWorkers, auto_workers, can_fork
from tests.unit.test_beam_layout import model_for

pytestmark = pytest.mark.skipif(not can_fork(), reason="decoding workers are forked (Linux)")

# lengths from 1 to 9: batches of 2 differ in cost, so the largest-first order is not input order
SOURCES = [[4 + (i * 7 + j) % 5 for j in range(1 + i % 9)] + [3] for i in range(23)]


def test_the_projection_copy_and_gate_table_are_made_before_the_fork() -> None:
    """The parent makes the output layer's Wᵀ copy and the decoder's gate table before forking,
    so the workers share them rather than each making its own."""
    model = model_for("luong-multihead")
    rnn = model.decoder.rnn
    assert projection._copies.peek(model.generator) is None
    assert rnn_step._tables.peek(rnn) is None
    with DecodeWorkers(model, BeamSearch(beam_size=2, max_length=4), 2):
        assert projection._copies.peek(model.generator) is not None
        assert rnn_step._tables.peek(rnn) is not None


def test_workers_give_the_hypotheses_of_decoding_in_process() -> None:
    """Every sentence's n-best list (tokens, scores, attention) equals the in-process one, in
    input order, with the largest batches sent first."""
    model = model_for("luong-multihead")
    search = BeamSearch(beam_size=3, n_best=2, max_length=6)
    alone = decode_ids(model, search, SOURCES, batch_size=2, keep_attention=True)
    with DecodeWorkers(model, search, 2) as workers:
        forked = decode_ids(model, search, SOURCES, 2, keep_attention=True, workers=workers)
        again = decode_ids(model, search, SOURCES[:5], 2, workers=workers)  # the pool is reused
    assert len(forked) == len(SOURCES)
    for mine, theirs in zip(forked, alone, strict=True):
        assert [h.tokens for h in mine] == [h.tokens for h in theirs]
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-6)
        for a, b in zip(mine, theirs, strict=True):
            assert torch.allclose(a.attention, b.attention)
            assert torch.allclose(a.head_attention, b.head_attention)
    assert [[h.tokens for h in n] for n in again] == [[h.tokens for h in n] for n in alone[:5]]
    assert all(h.attention is None for n in again for h in n)


class _DiesInWorkers:
    """A search that ends the process it runs in, unless that is the test process."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, model: object, batch: object, keep_attention: bool = False) -> list:
        if os.getpid() != self.parent:
            os._exit(9)  # as the kernel's out-of-memory killer would leave it
        return []


def test_a_worker_that_dies_ends_in_one_error() -> None:
    """The pool notices the dead process and the call raises Seq2SeqError naming a way out."""
    model = model_for("luong-dot")
    search, error = _DiesInWorkers(), pytest.raises(Seq2SeqError, match="worker died.*--workers 0")
    with DecodeWorkers(model, search, 2) as workers, error:
        decode_ids(model, search, SOURCES, 4, workers=workers)


def test_auto_workers_follow_the_threads_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker per thread from 2 to MAX_AUTO threads; none otherwise or off the CPU."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert auto_workers("cpu") == 2
    assert auto_workers("cuda") == 0
    monkeypatch.setattr(torch, "get_num_threads", lambda: MAX_AUTO)
    assert auto_workers(torch.device("cpu")) == MAX_AUTO
    monkeypatch.setattr(torch, "get_num_threads", lambda: MAX_AUTO + 1)  # not measured: threads
    assert auto_workers("cpu") == 0
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_workers("cpu") == 0
    with pytest.raises(ValueError, match="at least 2"):
        DecodeWorkers(model_for("luong-dot"), BeamSearch(), 1)


class _Reports:
    """A search whose one hypothesis per sentence says which process decoded it."""

    def __call__(self, model: object, batch: Any, keep_attention: bool = False) -> list:
        if int(batch.src[0, 0]) == 5:  # a sentence starting with piece 5: fails in the worker
            raise KeyError("a key")
        return [[Hypothesis([os.getpid(), batch.src.numel()], 0.0)] for _ in batch.src]


def test_workers_decode_largest_batches_first_and_send_errors_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batches run in other processes, in input order, sent to the pool's queue (which the
    workers take from in order) largest first; an error in one comes back as one Seq2SeqError
    naming it."""
    model, search = model_for("luong-dot"), _Reports()
    lengths = (1, 7, 3, 9, 5, 9, 2)
    sources = [[4] * n + [3] for n in lengths]
    with DecodeWorkers(model, search, 2) as workers:
        # the order the parent sends batches in: the workers' own clocks would also measure
        # when the system let each worker run, which under load is not the sending order
        sent: list[int] = []
        submit = workers._pool.submit

        def record(fn: Any, task: Any) -> Any:
            sent.append(len(task[0][0]))  # the batch's one source, with its </s>
            return submit(fn, task)

        monkeypatch.setattr(workers._pool, "submit", record)
        results = decode_ids(model, search, sources, 1, workers=workers)
        assert {r[0].tokens[0] for r in results} - {os.getpid()} == {
            r[0].tokens[0] for r in results
        }
        assert [r[0].tokens[1] for r in results] == [n + 1 for n in lengths]
        assert sent == sorted(sent, reverse=True) and sent[:2] == [10, 10]
        with pytest.raises(Seq2SeqError, match="decoding failed: KeyError: 'a key'"):
            decode_ids(model, search, [[5, 3], [4, 3]], 1, workers=workers)


def test_a_subclass_with_its_own_step_does_not_share_the_source() -> None:
    """A plugin decoder deriving from a built-in with its own step gets copied memory unless it
    declares shares_source itself."""
    from seq2seq.modules.decoders import LuongDecoder

    class OwnStep(LuongDecoder):
        def step(self, embedded: torch.Tensor, state: Any) -> Any:
            return super().step(embedded, state)

    assert LuongDecoder(8, 8).shares_source
    assert not OwnStep(8, 8).shares_source
