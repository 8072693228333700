"""Products over whole sequences in bf16 while training (`train.precision: bf16-products`).

A linear layer applied to every position of a batch at once (the additive attention's key and
query projections, the decoders' combine layers) and a GRU layer's input side (the input gates
of all steps, and their gradients) are large products, which a CPU with bf16 dot products runs
about twice as fast as in float32. Within `low_precision_products(torch.bfloat16)` their three
products (output, input gradient, weight gradient) take bf16 operands and round their results
to bf16, as autocast would; the weights, the biases, the sums of gradients over steps, the
recurrent steps' own products and every elementwise operation stay in float32. Decoding (no
graph) and everything outside the block are untouched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.modules.eager import eager_cpu, hooked

_scope = threading.local()  # the dtype `low_precision_products` set in this thread


@contextlib.contextmanager
def low_precision_products(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Within this block the products over whole sequences multiply in `dtype` when they
    build a graph (training)."""
    outer = getattr(_scope, "dtype", None)
    _scope.dtype = dtype
    try:
        yield
    finally:
        _scope.dtype = outer


def products_dtype(values: Tensor) -> torch.dtype | None:
    """The low dtype for a product over `values` (float32, building a graph, eager on the CPU)
    inside `low_precision_products`, else None."""
    low: torch.dtype | None = getattr(_scope, "dtype", None)
    if low is None or values.dtype != torch.float32 or not torch.is_grad_enabled():
        return None
    return low if eager_cpu(values) else None


def mm(left: Tensor, right: Tensor, low: torch.dtype | None) -> Tensor:
    """left @ right; with `low`, from operands in that type, the result in float32 after."""
    if low is None:
        return left @ right
    return (left.to(low) @ right.to(low)).float()


def linear(layer: nn.Module, values: Tensor) -> Tensor:
    """`layer(values)`; for a plain nn.Linear (no hooks) inside `low_precision_products`, with
    its three products in the low dtype."""
    low = products_dtype(values)
    if low is None or type(layer) is not nn.Linear or hooked(layer):
        return layer(values)
    assert isinstance(layer, nn.Linear)
    if layer.weight.dtype != torch.float32:
        return layer(values)
    return _LowLinear.apply(values, layer.weight, layer.bias, low)


class _LowLinear(torch.autograd.Function):
    """x Wᵀ + b with the three products in `low`; the bias and the result in float32."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, low: torch.dtype
    ) -> Tensor:
        rows = x.reshape(-1, x.size(-1)).to(low)
        weight_low = weight.to(low)
        ctx.save_for_backward(rows, weight_low)
        ctx.has_bias = bias is not None
        out = (rows @ weight_low.t()).float()
        if bias is not None:
            out += bias
        return out.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, weight_low = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.size(-1))
        grad_low = grad_rows.to(weight_low.dtype)
        grad_x = (grad_low @ weight_low).float().view(*grad.shape[:-1], weight_low.size(1))
        grad_w = (grad_low.t() @ rows).float()
        grad_b = grad_rows.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None
