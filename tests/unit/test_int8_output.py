"""`set_output_precision(model, "int8-output")` (`--precision int8-output`): the output layer's
decoding product in int8 (`modules/int8.py`), what it computes, where it applies, and its
one-message refusals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from seq2seq.errors import Seq2SeqError
from seq2seq.modules import int8, projection
from seq2seq.modules.projection import output_precision, project, set_output_precision
from tests.conftest import tiny_model


def _quantized_by_hand(generator: nn.Linear, rows: torch.Tensor) -> torch.Tensor:
    """The int8 recipe written out: symmetric scales max|·|/127 per output unit and per row
    (float32, as the layer's), integer products summed exactly (float64), scaled back, bias
    added."""
    weight = generator.weight.detach()
    w_scale = weight.abs().amax(1) / 127
    w_scale[w_scale == 0] = 1
    x_scale = rows.abs().amax(1, keepdim=True) / 127
    x_scale[x_scale == 0] = 1
    sums = (
        torch.round(rows / x_scale).double() @ torch.round(weight / w_scale[:, None]).double().t()
    )
    out = sums * w_scale.double() * x_scale.double()
    return out if generator.bias is None else out + generator.bias.double()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 8), (7, 8), (3, 1, 8), (2, 5, 8)])
def test_int8_products_are_the_quantized_product_and_close_to_float(
    bias: bool, shape: tuple[int, ...]
) -> None:
    """(N, H) and (B, T, H) features: exactly the hand-quantized product (up to float32
    rounding of the scaling), within quantization error of float32, the same argmax almost
    always; a row of zeros gives the bias."""
    torch.manual_seed(0)
    model = tiny_model()
    generator = model.generator
    if not bias:
        generator.bias = None
    features = torch.randn(shape)
    rows = features.view(-1, 8)
    if len(rows) > 1:
        rows[0] = 0.0
    set_output_precision(model, "int8-output")
    with torch.no_grad():
        exact = generator(features)
        int8 = project(generator, features)
    by_hand = _quantized_by_hand(generator, rows).float().view(exact.shape)
    assert int8.shape == exact.shape and int8.dtype == torch.float32
    assert torch.allclose(int8, by_hand, rtol=1e-5, atol=1e-6)
    assert not torch.equal(int8, exact)  # the int8 path ran
    scale = exact.abs().amax()
    assert (int8 - exact).abs().max() < 0.05 * scale  # two 8-bit roundings per term
    if len(rows) > 1:
        zero_row = int8.reshape(-1, int8.size(-1))[0]
        expected = torch.zeros_like(zero_row) if generator.bias is None else generator.bias
        assert torch.equal(zero_row, expected.detach())


def test_outputs_of_a_wide_layer_mostly_keep_their_argmax() -> None:
    """At the benchmark's size (256 → 8,000) the quantization moves logits by a small fraction
    of the gap that decides most argmaxes."""
    torch.manual_seed(1)
    model = tiny_model(vocab=8000)
    generator = nn.Linear(256, 8000)
    model.generator = generator
    features = torch.tanh(torch.randn(64, 256))
    set_output_precision(model, "int8-output")
    with torch.no_grad():
        exact, int8 = generator(features), project(generator, features)
    assert (exact.argmax(1) == int8.argmax(1)).float().mean() >= 0.9
    assert (int8 - exact).abs().max() < 0.02 * exact.abs().amax()


class _Projecting(nn.Module):
    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return project(self.generator, features)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace.*` is deprecated")
def test_off_again_training_and_graphs_stay_float() -> None:
    """With a graph to build (training), under tracing and after `on=False` the float product
    runs; `output_precision` says which is on."""
    model = tiny_model()
    generator, features = model.generator, torch.randn(4, 8)
    assert output_precision(model) == "fp32"
    set_output_precision(model, "int8-output")
    assert output_precision(model) == "int8-output"
    assert torch.equal(project(generator, features), generator(features))  # grad enabled
    with torch.no_grad():
        traced = torch.jit.trace(_Projecting(generator), (features,), check_trace=False)
        assert torch.equal(traced(features), generator(features))
        assert not torch.equal(project(generator, features), generator(features))
        set_output_precision(model, "fp32")
        assert output_precision(model) == "fp32"
        assert torch.allclose(project(generator, features), generator(features), atol=1e-6)
    set_output_precision(model, "int8-output")
    model.train()  # validation in training decodes in float
    assert output_precision(model) == "fp32"
    model.eval()
    assert output_precision(model) == "fp32"


def test_rows_that_are_not_finite_stay_so() -> None:
    """A row holding NaN or inf gets the float product's non-finite logits, not numbers made
    from an undefined cast; the other rows stay int8."""
    model = tiny_model()
    set_output_precision(model, "int8-output")
    features = torch.randn(4, 8)
    features[1, 3], features[2, 0] = float("nan"), float("inf")
    with torch.no_grad():
        out, exact = project(model.generator, features), model.generator(features)
    assert torch.isnan(out[1]).all() and not torch.isfinite(out[2]).any()
    assert torch.equal(out[1:3].isnan(), exact[1:3].isnan())
    assert torch.isfinite(out[[0, 3]]).all() and not torch.equal(out[0], exact[0])


def test_the_int8_weights_follow_a_changed_weight_and_training_frees_them() -> None:
    """The quantized copy is made once, made again after the weight changes in place, and
    dropped when the model goes back to training (cache_projection makes it before a fork)."""
    model = tiny_model()
    set_output_precision(model, "int8-output")
    generator, features = model.generator, torch.randn(3, 8)
    projection.cache_projection(model)
    made = int8.cached_weight(generator)
    assert made is not None and made[0].dtype == torch.int8 and made[0].shape == (8, 300)
    with torch.no_grad():
        before = project(generator, features)
        assert int8.cached_weight(generator) is made
        generator.weight.mul_(2.0)
        after = project(generator, features)
    assert int8.cached_weight(generator) is not made
    assert torch.allclose(after - generator.bias, 2 * (before - generator.bias), rtol=1e-4)
    model.train()
    assert int8.cached_weight(generator) is None


def test_every_ensemble_member_is_switched() -> None:
    """A model holding several Seq2Seq members (an ensemble) switches every output layer."""
    holder = nn.ModuleList([tiny_model(), tiny_model()])
    set_output_precision(holder, "int8-output")
    assert all(projection.output_precision(member) == "int8-output" for member in holder)


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    """The probe's verdicts forgotten before and after the test (it may fake torch._int_mm)."""
    int8.products_problem.cache_clear()
    yield
    int8.products_problem.cache_clear()


def test_refusals_are_one_message(monkeypatch: pytest.MonkeyPatch, fresh_probe: None) -> None:
    """No float output layer (a traced export), a model off the CPU, and a torch whose int8
    product is missing or inexact: a Seq2SeqError that says what to do; an unknown precision is
    a programming error."""
    with pytest.raises(Seq2SeqError, match="needs float output layers"):
        set_output_precision(nn.Sequential(nn.Linear(2, 2)), "int8-output")
    with pytest.raises(
        Seq2SeqError, match="decodes on a CPU; this model is on meta .*--device cpu"
    ):
        set_output_precision(tiny_model().to("meta"), "int8-output")
    with pytest.raises(ValueError, match="unknown decoding precision 'int4'"):
        set_output_precision(tiny_model(), "int4")

    def missing(*_: object) -> torch.Tensor:
        raise RuntimeError("no kernel")

    def saturating(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The AVX2 way without VNNI: left shifted to uint8, neighbouring products added in
        pairs that saturate at int16, the shift taken off again."""
        shifted = (left.int() + 128).view(left.size(0), -1, 2, 1)
        pairs = (shifted * right.int().view(-1, 2, right.size(1))).sum(2).clamp(-32768, 32767)
        return (pairs.sum(1) - 128 * right.int().sum(0)).int()

    for fake, message in [(missing, "no CPU int8 matrix product"), (saturating, "sum exactly")]:
        int8.products_problem.cache_clear()
        monkeypatch.setattr(torch, "_int_mm", fake)
        with pytest.raises(Seq2SeqError, match=f"cannot run here: .*{message}.*; use fp32"):
            set_output_precision(tiny_model(), "int8-output")
        monkeypatch.undo()
    int8.products_problem.cache_clear()
    assert int8.products_problem(8, 300) is None
