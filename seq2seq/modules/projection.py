"""The output projection of a decoding step on the CPU, from a cached contiguous copy of Wᵀ.

nn.Linear hands MKL Wᵀ as a transposed view, which it reads slowly at the 1–64 rows of a
decoding step: at one thread, 8 × 256 by 256 × 8,000 took 1.02 ms that way and 0.49 ms from a
contiguous copy, 26 rows 1.39 against 1.03 ms, 64 rows 2.13 against 1.83. The copy is made
again whenever the weight may have changed (`modules/derived.py`).

`set_output_precision(model, "int8-output")` (`--precision int8-output`) makes the product an
int8 one (`modules/int8.py`) until it is set back to "fp32" or the model enters training mode.
"""

from __future__ import annotations

import weakref
from typing import TypeGuard

import torch
from torch import Tensor, nn

from seq2seq.errors import Seq2SeqError
from seq2seq.modules import int8
from seq2seq.modules.derived import DerivedCache
from seq2seq.modules.eager import autocast_on_cpu, eager_cpu


def project(generator: nn.Module, features: Tensor) -> Tensor:
    """`generator(features)`, (…, H) → (…, V); on the CPU without a graph, from the cached Wᵀ."""
    if not _decoding_on_cpu(generator, features):
        return generator(features)
    rows = features.reshape(-1, features.size(-1))
    if generator in _int8_generators:
        logits = int8.linear(generator, rows)
    else:
        transposed, bias = _transposed(generator), generator.bias
        logits = rows @ transposed if bias is None else torch.addmm(bias, rows, transposed)
    return logits.view(*features.shape[:-1], logits.size(-1))


def cache_projection(model: nn.Module) -> None:
    """Make the copy of every `generator` in `model` now (Wᵀ, or its int8 form): forked decoding
    workers then share the parent's copy instead of each making its own."""
    for generator in _generators(model):
        if _plain_float_linear(generator):
            if generator in _int8_generators:
                int8.quantized_weight(generator)
            else:
                _transposed(generator)


DECODING_PRECISIONS = ("fp32", "int8-output")


def set_output_precision(model: nn.Module, precision: str) -> None:
    """Decode `model`'s output layers (every ensemble member's) in `precision` from now on:
    "fp32", or "int8-output" (CPU only). Training, and graphs (export, compile), stay in float;
    entering training mode sets "fp32" again.

    Raises Seq2SeqError where int8 cannot serve: a model without float output layers (a traced
    export), a model off the CPU, a torch whose int8 products are missing or inexact."""
    if precision not in DECODING_PRECISIONS:
        raise ValueError(f"unknown decoding precision {precision!r}; known: {DECODING_PRECISIONS}")
    if precision == "fp32":
        if _int8_generators:  # empty in the usual case (each training update): no module walk
            _int8_generators.difference_update(_generators(model))
        return
    generators = _generators(model)
    devices = {g.weight.device for g in generators if isinstance(g.weight, Tensor)}
    elsewhere = sorted(str(d) for d in devices if d.type != "cpu")
    if elsewhere:
        raise Seq2SeqError(
            f"--precision int8-output decodes on a CPU; this model is on {elsewhere[0]} "
            "(add --device cpu)"
        )
    if not generators or not all(_plain_float_linear(g) for g in generators):
        raise Seq2SeqError(
            "--precision int8-output needs float output layers, as a run dir's model has; an "
            "export dir keeps the precision it was exported with (seq2seq export --quantize int8)"
        )
    for generator in generators:
        problem = int8.products_problem(generator.in_features, generator.out_features)
        if problem:
            raise Seq2SeqError(f"--precision int8-output cannot run here: {problem}; use fp32")
    _int8_generators.update(generators)


def output_precision(model: nn.Module) -> str:
    """The decoding precision of the model's output layers: "int8-output" or "fp32"."""
    return "int8-output" if any(g in _int8_generators for g in _generators(model)) else "fp32"


def _generators(model: nn.Module) -> list[nn.Module]:
    """The output layers (`generator` attributes) of `model` and its submodules (ensembles)."""
    found = (getattr(module, "generator", None) for module in model.modules())
    return [generator for generator in found if isinstance(generator, nn.Module)]


_copies: DerivedCache[Tensor] = DerivedCache()
_int8_generators: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _transposed(linear: nn.Linear) -> Tensor:
    """The linear's contiguous Wᵀ, copied again when the weight may have changed."""
    weight = linear.weight
    return _copies.get(linear, (weight,), lambda: weight.detach().t().contiguous())


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
