"""Linear layers multiplied in int8 on the CPU, for decoding (`--precision int8-output`).

Symmetric quantization: the weight once per output unit and the input once per row, each to
round(v / s) with s = max|v| / 127, so no value is -128. The integer products are summed
exactly in int32 (`torch._int_mm`) and scaled back to the layer's float dtype, where the bias is
added. On the AMD EPYC (Zen 4, AVX-512 VNNI) at one thread, 64 × 256 by 256 × 8,000 took
1.0 ms this way against 4.4 ms in float32 and 2.3 ms with bf16 operands, whose bf16-rounded
results also changed more outputs than int8's.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from seq2seq.modules.derived import DerivedCache

LIMIT = 127  # the largest magnitude quantized values take

_weights: DerivedCache[tuple[Tensor, Tensor]] = DerivedCache()


def symmetric_scales(values: Tensor, dim: int) -> Tensor:
    """max|v| / LIMIT along `dim` (kept), 1 where a slice is all zeros (NaN and inf stay)."""
    scales = values.abs().amax(dim=dim, keepdim=True) / LIMIT
    return torch.where(scales == 0, torch.ones_like(scales), scales)


def quantized_weight(linear: nn.Linear) -> tuple[Tensor, Tensor]:
    """The linear's Wᵀ in int8, (in, out) contiguous, and each output unit's scale (out,);
    made again when the weight may have changed (`modules/derived.py`)."""
    weight = linear.weight

    def quantize() -> tuple[Tensor, Tensor]:
        values = weight.detach()
        scales = symmetric_scales(values, 1)
        quantized = torch.round(values / scales).to(torch.int8)
        return quantized.t().contiguous(), scales.squeeze(1)

    return _weights.get(linear, (weight,), quantize)


def cached_weight(linear: nn.Linear) -> tuple[Tensor, Tensor] | None:
    """The quantized weight as it is held now, if made (for tests and workers' checks)."""
    return _weights.peek(linear)


def linear(layer: nn.Linear, rows: Tensor) -> Tensor:
    """(N, in) float rows → (N, out): rows Wᵀ + b with both factors in int8. Rows holding NaN
    or ±inf go through the float product, so that they stay non-finite."""
    weight, weight_scales = quantized_weight(layer)
    row_scales = symmetric_scales(rows, 1)
    quantized = torch.round(rows / row_scales).clamp_(-LIMIT, LIMIT).to(torch.int8)
    scaled = torch._int_mm(quantized, weight) * weight_scales  # int32 × float: one pass
    out = (
        scaled.mul_(row_scales)
        if layer.bias is None
        else torch.addcmul(layer.bias, scaled, row_scales)
    )
    broken = ~torch.isfinite(row_scales.squeeze(1))
    if bool(broken.any()):
        out[broken] = nn.functional.linear(rows[broken], layer.weight, layer.bias)
    return out


@functools.cache
def products_problem(inner: int, outer: int) -> str | None:
    """Why int8 products of (rows, inner) by (inner, outer) cannot serve here, or None.

    `torch._int_mm` must exist on the CPU and sum the extremes exactly, at 1 and 64 rows: on
    CPUs without VNNI, kernels that add pairs of int8 products in int16 may saturate."""
    signs = torch.tensor([1, -1], dtype=torch.int8)
    right = (signs.repeat(outer // 2 + 1)[:outer] * LIMIT).expand(inner, outer).contiguous()
    for rows in (1, 64):
        left = (signs.repeat(rows // 2 + 1)[:rows, None] * LIMIT).expand(rows, inner).contiguous()
        try:
            sums = torch._int_mm(left, right)
        except (AttributeError, RuntimeError) as exc:
            return f"this torch has no CPU int8 matrix product ({type(exc).__name__}: {exc})"
        expected = left[:, :1].long() * right[:1].long() * inner
        if not torch.equal(sums.long(), expected):
            return "this CPU's int8 matrix product does not sum exactly"
    return None
