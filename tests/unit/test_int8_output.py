"""`use_int8_output` (`--precision int8-output`): the output layer's decoding product in int8,
what it computes, where it applies, and its one-message refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.assemble import build_model
from seq2seq.errors import Seq2SeqError
from seq2seq.modules import projection
from seq2seq.modules.projection import output_precision, project, use_int8_output
from seq2seq.recipe import ModelConfig


def _model(vocab: int = 300) -> nn.Module:
    config = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        encoder={"type": "gru", "hidden_size": 4},  # type: ignore[arg-type]
        attention="bahdanau",
        decoder={"type": "luong", "hidden_size": 8, "dropout": 0.0},  # type: ignore[arg-type]
    )
    return build_model(config, 20, vocab).eval()


def _quantized_by_hand(generator: nn.Linear, rows: torch.Tensor) -> torch.Tensor:
    """The int8 recipe written out in float64: symmetric scales max|·|/127 per output column
    and per row, integer products summed exactly, scaled back, bias added."""
    weight = generator.weight.detach().double()
    w_scale = weight.abs().amax(1) / 127
    w_scale[w_scale == 0] = 1
    x = rows.double()
    x_scale = x.abs().amax(1, keepdim=True) / 127
    x_scale[x_scale == 0] = 1
    sums = torch.round(x / x_scale) @ torch.round(weight / w_scale[:, None]).t()
    out = sums * w_scale * x_scale
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
    model = _model()
    generator = model.generator
    if not bias:
        generator.bias = None
    features = torch.randn(shape)
    rows = features.view(-1, 8)
    if len(rows) > 1:
        rows[0] = 0.0
    use_int8_output(model)
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
    model = _model(vocab=8000)
    generator = nn.Linear(256, 8000)
    model.generator = generator
    features = torch.tanh(torch.randn(64, 256))
    use_int8_output(model)
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
    model = _model()
    generator, features = model.generator, torch.randn(4, 8)
    assert output_precision(model) == "fp32"
    use_int8_output(model)
    assert output_precision(model) == "int8-output"
    assert torch.equal(project(generator, features), generator(features))  # grad enabled
    with torch.no_grad():
        traced = torch.jit.trace(_Projecting(generator), (features,), check_trace=False)
        assert torch.equal(traced(features), generator(features))
        assert not torch.equal(project(generator, features), generator(features))
        use_int8_output(model, on=False)
        assert output_precision(model) == "fp32"
        assert torch.allclose(project(generator, features), generator(features), atol=1e-6)


def test_the_int8_weights_follow_a_changed_weight_and_training_frees_them() -> None:
    """The quantized copy is made once, made again after the weight changes in place, and
    dropped when the model goes back to training (cache_projection makes it before a fork)."""
    model = _model()
    use_int8_output(model)
    generator, features = model.generator, torch.randn(3, 8)
    projection.cache_projection(model)
    made = projection._int8_copies.peek(generator)
    assert made is not None and made[0].dtype == torch.int8 and made[0].shape == (8, 300)
    with torch.no_grad():
        before = project(generator, features)
        assert projection._int8_copies.peek(generator) is made
        generator.weight.mul_(2.0)
        after = project(generator, features)
    assert projection._int8_copies.peek(generator) is not made
    assert torch.allclose(after - generator.bias, 2 * (before - generator.bias), rtol=1e-4)
    model.train()
    assert projection._int8_copies.peek(generator) is None


def test_every_ensemble_member_is_switched() -> None:
    """A model holding several Seq2Seq members (an ensemble) switches every output layer."""
    holder = nn.ModuleList([_model(), _model()])
    use_int8_output(holder)
    assert all(projection.output_precision(member) == "int8-output" for member in holder)


def test_refusals_are_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """No float output layer (a traced export), a model off the CPU, and a torch whose int8
    product is missing or inexact: a Seq2SeqError that says what to do."""
    with pytest.raises(Seq2SeqError, match="needs a run dir's float model"):
        use_int8_output(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(Seq2SeqError, match="decodes on a CPU; this model is on meta"):
        use_int8_output(_model().to("meta"))

    def missing(*_: object) -> torch.Tensor:
        raise RuntimeError("no kernel")

    for fake, message in [
        (missing, "no CPU int8 matrix product"),
        (lambda a, b: (a.int() @ b.int()).clamp(-32768, 32767), "does not sum exactly"),
    ]:
        projection._int8_products_problem.cache_clear()
        monkeypatch.setattr(torch, "_int_mm", fake)
        with pytest.raises(Seq2SeqError, match=f"cannot run here: .*{message}.*; use fp32"):
            use_int8_output(_model())
        monkeypatch.undo()
    projection._int8_products_problem.cache_clear()
    assert projection._int8_products_problem() is None
