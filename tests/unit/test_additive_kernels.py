"""The compiled additive-score loops: equal to the plain formula in float32, split over threads,
NaN kept, and used only where they pay (training, or a process that loaded them already)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from seq2seq.modules.attention import additive_kernels
from seq2seq.modules.attention.additive_scores import additive_scores, reference_scores

pytestmark = pytest.mark.skipif(
    additive_kernels._kernels() is None, reason="numba is not installed"
)


def _inputs(B: int, T: int, S: int, A: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(1)
    queries = torch.randn(B, T, A, generator=gen, dtype=dtype, requires_grad=True)
    keys = torch.randn(B, S, A, generator=gen, dtype=dtype, requires_grad=True)
    energy = nn.Linear(A, 1, bias=False).to(dtype)
    return queries, keys, energy


def _grads(scores_fn, queries, keys, energy, upstream):
    scores = scores_fn(queries, keys, energy)
    grads = torch.autograd.grad((scores * upstream).sum(), (queries, keys, energy.weight))
    return scores, grads


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_float32_scores_and_gradients_match_the_plain_formula(threads) -> None:
    """A vector width's worth of A and more, an odd batch split unevenly over the threads, and
    upstream zeros (masked keys, padded steps) that the backward loop skips."""
    queries, keys, energy = _inputs(5, 7, 9, 70)
    upstream = torch.randn(5, 7, 9)
    upstream[:, :, 6:] = 0.0  # masked keys
    upstream[1, 4:] = 0.0  # padded target steps
    # zeros inside rows and steps too: a loop that stopped at the first zero would pass the
    # trailing ones above
    upstream[torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(3)) < 0.2] = 0.0
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got, got_grads = _grads(additive_scores, queries, keys, energy, upstream)
    finally:
        torch.set_num_threads(before)
    want, want_grads = _grads(reference_scores, queries, keys, energy, upstream)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_every_thread_count_gives_the_same_bits_on_a_larger_batch() -> None:
    """Each part writes only its own sentences' rows (grad_v has one row per sentence): a batch
    large enough for the parts to overlap in time gives 1 thread's results bit for bit."""
    queries, keys, energy = _inputs(8, 60, 70, 64)
    upstream = torch.randn(8, 60, 70)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            results.append(_grads(additive_scores, queries, keys, energy, upstream))
    finally:
        torch.set_num_threads(before)
    for scores, grads in results[1:]:
        assert torch.equal(scores, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1], strict=True))


def test_the_loops_are_what_runs_in_training(monkeypatch) -> None:
    """The scores and gradients come from the compiled loops, not from the tensor code."""
    calls = []
    for name in ("scores", "score_grads"):
        original = getattr(additive_kernels, name)
        monkeypatch.setattr(
            additive_kernels, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a)
        )
    queries, keys, energy = _inputs(2, 3, 4, 8)
    additive_scores(queries, keys, energy).sum().backward()
    assert calls == ["scores", "score_grads"]


def test_a_nan_gradient_comes_out_as_nan() -> None:
    """No fast-math `nnan`: a diverging loss's NaN reaches the gradients the trainer checks."""
    queries, keys, energy = _inputs(2, 3, 4, 16)
    upstream = torch.ones(2, 3, 4)
    upstream[0, 1, 2] = float("nan")
    _, grads = _grads(additive_scores, queries, keys, energy, upstream)
    assert torch.isnan(grads[0][0, 1]).all() and torch.isfinite(grads[0][1]).all()
    assert torch.isnan(grads[2]).all()


@pytest.mark.parametrize(
    "dtypes",
    [(torch.bfloat16,) * 3, (torch.float32, torch.float64, torch.float32), (torch.float16,) * 3],
    ids=["bf16", "mixed", "fp16"],
)
def test_other_dtypes_are_left_to_the_tensor_code(dtypes) -> None:
    """The loops take float32 or float64, all of one type, on the CPU."""
    tensors = [torch.ones(2, 3, 4, dtype=dtype) for dtype in dtypes]
    assert not additive_kernels.available(*tensors)
    assert additive_kernels.available(*(t.float() for t in tensors))


_FRESH_PROCESS = """
import sys, torch
from torch import nn
from seq2seq.modules.attention.additive_scores import additive_scores
q, k, energy = torch.randn(2, 1, 8), torch.randn(2, 5, 8), nn.Linear(8, 1, bias=False)
with torch.no_grad():
    additive_scores(q, k, energy)
print("decoding", "numba" in sys.modules)
additive_scores(q.requires_grad_(), k, energy).sum().backward()
print("training", "numba" in sys.modules)
"""


def test_decoding_in_a_fresh_process_does_not_import_numba() -> None:
    """Importing Numba costs a translate command more than the loops save it; training pays."""
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[:2] == ["decoding False", "training True"], done.stderr


def test_without_numba_the_loops_are_unavailable(monkeypatch) -> None:
    """An environment without Numba (import fails) runs the tensor code."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    additive_kernels._kernels.cache_clear()
    try:
        assert not additive_kernels.available(torch.ones(1, 1, 1))
    finally:
        monkeypatch.delitem(sys.modules, "numba")
        additive_kernels._kernels.cache_clear()
    assert additive_kernels.available(torch.ones(1, 1, 1))
