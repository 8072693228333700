"""The blocked additive score equals the whole-sum formula in values and in every gradient, both
as the compiled loops (where Numba is installed) and as the blocked tensor code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.modules.attention import additive_kernels
from seq2seq.modules.attention import additive_scores as kernel
from seq2seq.modules.attention.additive_scores import additive_scores, reference_scores


@pytest.fixture(autouse=True, params=["compiled", "tensor"])
def score_path(request, monkeypatch) -> str:
    """Every test runs on both paths: the compiled loops (loaded, so decoding takes them too)
    and the blocked tensor code, which serves where Numba is missing."""
    if request.param == "compiled":
        if additive_kernels._kernels() is None:
            pytest.skip("numba is not installed")
    else:
        monkeypatch.setattr(additive_kernels, "available", lambda *tensors, load=True: False)
    return request.param


# (B, T, S, A) and a block size that forces both ways of cutting: several blocks per sentence
# (T ≥ rows per block) and several sentences per block (single decoding steps, short targets)
SHAPES = [
    pytest.param((3, 7, 5, 4), 40, id="steps-split-within-a-sentence"),
    pytest.param((5, 1, 6, 4), 60, id="single-steps-several-sentences-per-block"),
    pytest.param((4, 2, 3, 4), 60, id="short-targets-several-sentences-per-block"),
    pytest.param((3, 0, 4, 5), 40, id="no-steps"),
    pytest.param((2, 3, 4, 5), 1, id="one-row-per-block"),
    pytest.param((2, 3, 4, 5), 1 << 18, id="one-block"),
]


def _inputs(shape: tuple[int, int, int, int], dtype: torch.dtype = torch.float64):
    B, T, S, A = shape
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(B, T, A, generator=gen, dtype=dtype, requires_grad=True)
    keys = torch.randn(B, S, A, generator=gen, dtype=dtype, requires_grad=True)
    energy = nn.Linear(A, 1, bias=False).to(dtype)
    return queries, keys, energy


@pytest.mark.parametrize(("shape", "block"), SHAPES)
def test_blocked_scores_and_gradients_equal_the_whole_sum(shape, block, monkeypatch) -> None:
    """Scores, and the gradients of queries, keys and v under a random upstream gradient."""
    monkeypatch.setattr(kernel, "BLOCK_ELEMENTS", block)
    queries, keys, energy = _inputs(shape)
    upstream = torch.randn(shape[0], shape[1], shape[2], dtype=torch.float64)
    got = additive_scores(queries, keys, energy)
    grads = torch.autograd.grad((got * upstream).sum(), (queries, keys, energy.weight))
    expected = reference_scores(queries, keys, energy)
    want = torch.autograd.grad((expected * upstream).sum(), (queries, keys, energy.weight))
    torch.testing.assert_close(got, expected)
    for mine, theirs in zip(grads, want, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_blocked_backward_passes_gradcheck(monkeypatch) -> None:
    """Finite differences agree with the hand-written backward pass (float64)."""
    monkeypatch.setattr(kernel, "BLOCK_ELEMENTS", 24)
    queries, keys, energy = _inputs((2, 3, 4, 3))
    vector = energy.weight[0].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(kernel._BlockedAdditiveScores.apply, (queries, keys, vector))


def test_without_gradients_no_graph_is_built(monkeypatch) -> None:
    """Decoding (no_grad) takes the plain blocked loop: same scores, no grad_fn."""
    monkeypatch.setattr(kernel, "BLOCK_ELEMENTS", 50)
    queries, keys, energy = _inputs((6, 1, 5, 4))
    with torch.no_grad():
        got = additive_scores(queries, keys, energy)
    assert got.grad_fn is None
    torch.testing.assert_close(got, reference_scores(queries, keys, energy).detach())


def test_mixed_precision_inputs_compute_in_the_wider_type() -> None:
    """bf16 queries with float32 keys (as under autocast) give float32 scores."""
    queries, keys, energy = _inputs((2, 3, 4, 5), torch.float32)
    got = additive_scores(queries.detach().bfloat16(), keys, energy)
    assert got.dtype == torch.float32
    torch.testing.assert_close(
        got, reference_scores(queries.bfloat16().float(), keys, energy), rtol=1e-5, atol=1e-5
    )


def test_a_quantized_energy_layer_takes_the_whole_sum() -> None:
    """An int8 export replaces the energy Linear (its weight is a method): the layer is called."""
    if not hasattr(torch.ao.quantization, "quantize_dynamic"):
        pytest.skip("this torch has no quantize_dynamic")
    queries, keys, energy = _inputs((2, 3, 4, 8), torch.float32)
    quantized = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(energy), {nn.Linear}, dtype=torch.qint8
    )[0]
    assert not isinstance(quantized.weight, torch.Tensor)
    with torch.no_grad():
        got = additive_scores(queries, keys, quantized)
        torch.testing.assert_close(got, reference_scores(queries, keys, energy), atol=0.05, rtol=0)


def test_bf16_gradients_sum_blocks_in_float32(monkeypatch) -> None:
    """Many bf16 blocks: the query, key and energy gradients stay close to the exact ones."""
    monkeypatch.setattr(kernel, "BLOCK_ELEMENTS", 1024)  # 480 blocks
    queries, keys, energy = _inputs((8, 60, 30, 32))
    upstream = torch.randn(8, 60, 30, dtype=torch.float64)
    exact = torch.autograd.grad(
        (reference_scores(queries, keys, energy) * upstream).sum(),
        (queries, keys, energy.weight),
    )
    low = [t.detach().bfloat16().requires_grad_(True) for t in (queries, keys)]
    vector = energy.weight.detach().bfloat16().requires_grad_(True)
    blocked = kernel._BlockedAdditiveScores.apply(low[0], low[1], vector[0])
    got = torch.autograd.grad((blocked * upstream.bfloat16()).sum(), (low[0], low[1], vector))
    for mine, truth in zip(got, exact, strict=True):
        assert mine.dtype == torch.bfloat16
        error = float((mine.double() - truth).norm() / truth.norm())
        assert error < 0.008, error  # float32 sums: 0.5 %; bf16 sums: 1.0 % (keys), 3.8 % (v)


def test_an_energy_layer_with_a_bias_takes_the_whole_sum() -> None:
    """Only v (A → 1, no bias) is blocked; any other layer is called as it is."""
    queries, keys, _ = _inputs((2, 3, 4, 5))
    energy = nn.Linear(5, 1, bias=True).double()
    torch.testing.assert_close(
        additive_scores(queries, keys, energy), reference_scores(queries, keys, energy)
    )


def _far_apart(dtype: torch.dtype):
    """Queries near +100 and keys near −98: each e^∓ overflows float32 (their sum does not)."""
    queries, keys, energy = _inputs((2, 3, 4, 5), dtype)
    with torch.no_grad():
        queries += 100.0
        keys -= 98.0
    return queries, keys, energy


@pytest.mark.parametrize("grad", [True, False], ids=["training", "decoding"])
def test_sums_whose_parts_overflow_e_to_the_x_take_sigmoid_of_the_sum(grad) -> None:
    """σ(q + k) = 1 / (1 + e⁻ᵠ e⁻ᵏ) would be 1 / (1 + 0 · ∞) here: the sum itself is taken."""
    queries, keys, energy = _far_apart(torch.float32)
    with torch.set_grad_enabled(grad):
        got = additive_scores(queries, keys, energy)
        expected = reference_scores(queries, keys, energy)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected)
    if grad:
        mine = torch.autograd.grad(got.sum(), (queries, keys))
        theirs = torch.autograd.grad(expected.sum(), (queries, keys))
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a, b)


def test_nan_queries_give_nan_scores_as_the_plain_formula() -> None:
    """NaN fails the bound check (it compares false) and propagates as σ of the sum does."""
    queries, keys, energy = _inputs((2, 3, 4, 5), torch.float32)
    with torch.no_grad():
        queries[0, 1, 2] = float("nan")
        got = additive_scores(queries, keys, energy)
    assert torch.isnan(got[0, 1]).all() and torch.isfinite(got[1]).all()


def test_decoding_reuses_e_to_the_minus_k_only_while_the_keys_are_unchanged(monkeypatch) -> None:
    """Steps with the same keys make e⁻ᵏ once; keys changed in place or a new keys tensor (beam
    search dropping finished sentences) give their own scores, never the stale ones."""
    made = []
    negative_exp = kernel._negative_exp
    monkeypatch.setattr(kernel, "_negative_exp", lambda v: made.append(v.shape) or negative_exp(v))
    queries, keys, energy = _inputs((3, 1, 4, 5), torch.float32)
    with torch.no_grad():
        for _ in range(3):  # three steps: e⁻ᵏ once, e⁻ᵠ each time
            torch.testing.assert_close(
                additive_scores(queries, keys, energy), reference_scores(queries, keys, energy)
            )
        assert made.count(keys.shape) == 1 and made.count(queries.shape) == 3
        other = torch.randn_like(keys)  # the next batch: same shape, same version (0)
        torch.testing.assert_close(
            additive_scores(queries, other, energy), reference_scores(queries, other, energy)
        )
        keys.mul_(0.5)
        torch.testing.assert_close(
            additive_scores(queries, keys, energy), reference_scores(queries, keys, energy)
        )
        fewer = keys[:2].clone()
        torch.testing.assert_close(
            additive_scores(queries[:2], fewer, energy),
            reference_scores(queries[:2], fewer, energy),
        )
    assert made.count(keys.shape) == 3 and made.count(fewer.shape) == 1


def test_decoding_in_inference_mode_makes_e_to_the_minus_k_at_every_call() -> None:
    """Inference tensors have no version counter: nothing is cached, the scores are right."""
    queries, keys, energy = _inputs((3, 1, 4, 5), torch.float32)
    with torch.inference_mode():
        fresh = keys.detach().clone()
        for _ in range(2):
            torch.testing.assert_close(
                additive_scores(queries, fresh, energy), reference_scores(queries, fresh, energy)
            )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_takes_sigmoid_of_the_sum(dtype) -> None:
    """e^±20 leaves float16's range (and bf16 keeps 8 bits): halves are never factored."""
    queries = torch.tensor([[[-12.0, -20.0]]], dtype=dtype)
    keys = torch.tensor([[[12.0, 21.0]]], dtype=dtype)
    energy = nn.Linear(2, 1, bias=False).to(dtype)
    assert kernel._negative_exp(queries) is None
    with torch.no_grad():
        got = additive_scores(queries, keys, energy)
        torch.testing.assert_close(got, reference_scores(queries, keys, energy))
    assert torch.isfinite(got).all()


def test_the_backward_pass_is_not_differentiated_again() -> None:
    """σ is rebuilt from constants in the backward pass: a second derivative must fail loudly,
    not come out wrong."""
    queries, keys, energy = _inputs((2, 3, 4, 5))
    scores = additive_scores(queries, keys, energy)
    (grad_queries,) = torch.autograd.grad(scores.pow(2).sum(), (queries,), create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad_queries.pow(2).sum().backward()
