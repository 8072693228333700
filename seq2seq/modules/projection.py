"""The output projection of a decoding step on the CPU, from a cached contiguous copy of Wᵀ.

nn.Linear hands MKL Wᵀ as a transposed view, which it reads slowly at the 1–64 rows of a
decoding step: at one thread, 8 × 256 by 256 × 8,000 took 1.02 ms that way and 0.49 ms from a
contiguous copy, 26 rows 1.39 against 1.03 ms, 64 rows 2.13 against 1.83. The copy is made
again whenever the weight may have changed (`modules/derived.py`).
"""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import Tensor, nn

from seq2seq.modules.derived import DerivedCache
from seq2seq.modules.eager import autocast_on_cpu, eager_cpu


def project(generator: nn.Module, features: Tensor) -> Tensor:
    """`generator(features)`, (…, H) → (…, V); on the CPU without a graph, from the cached Wᵀ."""
    if not _decoding_on_cpu(generator, features):
        return generator(features)
    rows, transposed = features.reshape(-1, features.size(-1)), _transposed(generator)
    bias = generator.bias
    logits = rows @ transposed if bias is None else torch.addmm(bias, rows, transposed)
    return logits.view(*features.shape[:-1], logits.size(-1))


def cache_projection(model: nn.Module) -> None:
    """Make the copy of every `generator` in `model` now: forked decoding workers then share the
    parent's copy instead of each making its own."""
    for generator in _generators(model):
        if _plain_float_linear(generator):
            _transposed(generator)


def _generators(model: nn.Module) -> list[nn.Module]:
    """The output layers (`generator` attributes) of `model` and its submodules (ensembles)."""
    found = (getattr(module, "generator", None) for module in model.modules())
    return [generator for generator in found if isinstance(generator, nn.Module)]


_copies: DerivedCache[Tensor] = DerivedCache()


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
