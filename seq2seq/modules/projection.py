"""The output projection of a decoding step on the CPU, from a cached contiguous copy of Wᵀ.

nn.Linear hands MKL Wᵀ as a transposed view, which it reads slowly at the 1–64 rows of a
decoding step: at one thread, 8 × 256 by 256 × 8,000 took 1.02 ms that way and 0.49 ms from a
contiguous copy, 26 rows 1.39 against 1.03 ms, 64 rows 2.13 against 1.83. The copy is made
again whenever the weight may have changed (`modules/derived.py`).

With `use_int8_output` (`--precision int8-output`), the product is done in int8: Wᵀ quantized
once per output column (scale max|w|/127), each row of features per decoding step (scale
max|x|/127), the int32 sums exact, then scaled back and the bias added in float. At one thread,
64 × 256 by 256 × 8,000 took 1.0 ms that way against 4.4 in float32 and 2.3 with bf16 operands
(whose result is rounded to bf16, so its outputs changed more often than int8's).
"""

from __future__ import annotations

import functools
import weakref
from typing import TypeGuard

import torch
from torch import Tensor, nn

from seq2seq.errors import Seq2SeqError
from seq2seq.modules.derived import DerivedCache
from seq2seq.modules.eager import autocast_on_cpu, eager_cpu


def project(generator: nn.Module, features: Tensor) -> Tensor:
    """`generator(features)`, (…, H) → (…, V); on the CPU without a graph, from the cached Wᵀ."""
    if not _decoding_on_cpu(generator, features):
        return generator(features)
    rows = features.reshape(-1, features.size(-1))
    if generator in _int8_generators:
        logits = _int8_product(generator, rows)
    else:
        transposed, bias = _transposed(generator), generator.bias
        logits = rows @ transposed if bias is None else torch.addmm(bias, rows, transposed)
    return logits.view(*features.shape[:-1], logits.size(-1))


def cache_projection(model: nn.Module) -> None:
    """Make the copy of every `generator` in `model` now: forked decoding workers then share the
    parent's copy instead of each making its own."""
    for generator in _generators(model):
        if _plain_float_linear(generator):
            if generator in _int8_generators:
                _int8_weights(generator)
            else:
                _transposed(generator)


def use_int8_output(model: nn.Module, on: bool = True) -> None:
    """Decode `model`'s output layers (ensemble members' too) with int8 products from now on, or
    again in float with `on=False`. Training and graphs (export, compile) are unaffected.

    Raises Seq2SeqError where it cannot: a traced export, a model off the CPU, or a torch whose
    int8 products are missing or not exact."""
    generators = _generators(model)
    if not on:
        _int8_generators.difference_update(generators)
        return
    devices = {g.weight.device for g in generators if isinstance(g.weight, Tensor)}
    elsewhere = sorted(str(d) for d in devices if d.type != "cpu")
    if elsewhere:
        raise Seq2SeqError(
            f"--precision int8-output decodes on a CPU; this model is on {elsewhere[0]}"
        )
    if not generators or not all(_plain_float_linear(g) for g in generators):
        raise Seq2SeqError(
            "--precision int8-output needs a run dir's float model; an export dir keeps the "
            "precision it was exported with (seq2seq export --quantize int8)"
        )
    problem = _int8_products_problem()
    if problem:
        raise Seq2SeqError(f"--precision int8-output cannot run here: {problem}; use fp32")
    _int8_generators.update(generators)


def output_precision(model: nn.Module) -> str:
    """ "int8-output" when `use_int8_output` is on for the model's output layers, else "fp32"."""
    return "int8-output" if any(g in _int8_generators for g in _generators(model)) else "fp32"


def _generators(model: nn.Module) -> list[nn.Module]:
    """The output layers (`generator` attributes) of `model` and its submodules (ensembles)."""
    found = (getattr(module, "generator", None) for module in model.modules())
    return [generator for generator in found if isinstance(generator, nn.Module)]


_copies: DerivedCache[Tensor] = DerivedCache()
_int8_copies: DerivedCache[tuple[Tensor, Tensor]] = DerivedCache()
_int8_generators: weakref.WeakSet[nn.Module] = weakref.WeakSet()
INT8_MAX = 127  # symmetric: -128 is never used, so no product or sum can overflow a sign


def _transposed(linear: nn.Linear) -> Tensor:
    """The linear's contiguous Wᵀ, copied again when the weight may have changed."""
    weight = linear.weight
    return _copies.get(linear, (weight,), lambda: weight.detach().t().contiguous())


def _int8_weights(linear: nn.Linear) -> tuple[Tensor, Tensor]:
    """The linear's Wᵀ in int8 (H, V), contiguous, and each output column's float scale (V,)."""
    weight = linear.weight

    def quantize() -> tuple[Tensor, Tensor]:
        values = weight.detach()
        scales = values.abs().amax(dim=1) / INT8_MAX
        scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # an all-zero row
        quantized = torch.round(values / scales[:, None]).to(torch.int8)
        return quantized.t().contiguous(), scales

    return _int8_copies.get(linear, (weight,), quantize)


def _int8_product(linear: nn.Linear, rows: Tensor) -> Tensor:
    """rows Wᵀ + b with both factors quantized to int8 (rows one scale each), summed exactly
    in int32 and scaled back in the features' dtype."""
    quantized_weight, weight_scales = _int8_weights(linear)
    row_scales = rows.abs().amax(dim=1, keepdim=True) / INT8_MAX
    row_scales = torch.where(row_scales > 0, row_scales, torch.ones_like(row_scales))
    quantized = torch.round(rows / row_scales).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    sums = torch._int_mm(quantized, quantized_weight)
    scaled = sums * weight_scales  # int32 × float: one pass, in the weight's (= rows') dtype
    if linear.bias is None:
        return scaled.mul_(row_scales)
    return torch.addcmul(linear.bias, scaled, row_scales)


@functools.cache
def _int8_products_problem() -> str | None:
    """Why int8 products cannot serve in this process, or None: `torch._int_mm` must exist on
    the CPU and sum extreme values exactly (CPUs without VNNI may saturate int16 pairs)."""
    left = torch.tensor([[INT8_MAX] * 64, [-INT8_MAX] * 64], dtype=torch.int8)
    right = torch.full((64, 17), INT8_MAX, dtype=torch.int8)
    right[:, 1] = -INT8_MAX
    try:
        sums = torch._int_mm(left, right)
    except (AttributeError, RuntimeError) as exc:
        return f"this torch has no CPU int8 matrix product ({type(exc).__name__}: {exc})"
    if not torch.equal(sums.long(), left.long() @ right.long()):
        return "this CPU's int8 matrix product does not sum exactly"
    return None


def _plain_float_linear(module: nn.Module) -> TypeGuard[nn.Linear]:
    """An nn.Linear itself (not an int8 or plugin subclass) with a float CPU weight that has a
    version counter (one made in inference mode has none)."""
    if type(module) is not nn.Linear:
        return False
    weight = module.weight
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.float64)
        and not weight.is_inference()
    )


def _decoding_on_cpu(generator: nn.Module, features: Tensor) -> TypeGuard[nn.Linear]:
    """Whether `project` may use the copy: no graph to build, eager (tracing and compiling must
    see the module itself), no autocast (it picks the dtype), matching dtypes."""
    return (
        not torch.is_grad_enabled()
        and _plain_float_linear(generator)
        and eager_cpu(features)
        and not autocast_on_cpu()
        and features.dtype == generator.weight.dtype
    )
