"""Products over whole sequences in bf16 while training (`train.precision: bf16-products`).

A linear layer applied to every position of a batch at once (the additive attention's key and
query projections, the Luong decoder's combine layer when it runs over the whole target) and a
GRU layer's products over all its steps (the input gates, and in backward the gradients of the
input, of W_ih and of W_hh) are large products, which a CPU with bf16 dot products runs about
twice as fast as in float32. Within `low_precision_products(torch.bfloat16)` they take bf16
operands and round their results to bf16, as autocast would; the weights, the biases, the
recurrent steps' own products (one step at a time: forward, and the state's gradient), the
softmaxes and every elementwise operation stay in float32. Layers called one step at a time
(input feeding, scheduled sampling, coverage) keep float32, as do decoding (no graph), frozen
layers and everything outside the block.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from seq2seq.modules.eager import dtype_scope, eager_cpu, hooked

_scope = threading.local()  # the dtype `low_precision_products` set in this thread


@contextlib.contextmanager
def low_precision_products(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Within this block the products over whole sequences multiply in `dtype` where they
    build a graph (training)."""
    with dtype_scope(_scope, dtype):
        yield


def low_dtype(values: Tensor, *weights: Tensor) -> torch.dtype | None:
    """The dtype for products over float32 `values` inside `low_precision_products` where a
    gradient is to be made (of the values or a weight), eager on the CPU; else None."""
    low: torch.dtype | None = getattr(_scope, "dtype", None)
    if low is None or values.dtype != torch.float32 or not torch.is_grad_enabled():
        return None
    if not (values.requires_grad or any(w.requires_grad for w in weights)):
        return None
    return low if eager_cpu(values) else None


PAD = 64  # operands are padded with zeros to multiples of this many rows and columns


def mm(left: Tensor, right: Tensor, low: torch.dtype | None) -> Tensor:
    """left @ right (batched over leading dimensions); with `low`, from operands in that type
    padded with zeros to multiples of PAD, the result in float32 after.

    Without the padding, every batch's new number of rows cost oneDNN a new kernel and glibc's
    heap a hole: the matched training's peak RSS went from 765 to 1,559 MiB (as the output
    layer's chunks had, `modules/output.py`)."""
    if low is None:
        return left @ right
    product = _padded(left, low) @ _padded(right, low)
    return product[..., : left.size(-2), : right.size(-1)].float()


def _padded(values: Tensor, low: torch.dtype) -> Tensor:
    """`values` in `low`, its last two dimensions padded with zeros to multiples of PAD."""
    *lead, rows, cols = values.shape
    out = values.new_empty(*lead, -(-rows // PAD) * PAD, -(-cols // PAD) * PAD, dtype=low)
    out[..., :rows, :cols].copy_(values)
    out[..., rows:, :].zero_()
    out[..., :rows, cols:].zero_()
    return out


def linear(layer: nn.Module, values: Tensor) -> Tensor:
    """`layer(values)`; for a plain float32 nn.Linear (no hooks) over (B, T, ·) values of more
    than one position inside `low_precision_products`, with its three products in the low
    dtype. (B, ·) values are a single step of a recurrence and stay in float32."""
    if type(layer) is not nn.Linear or values.dim() != 3 or values.size(1) < 2:
        return layer(values)
    assert isinstance(layer, nn.Linear)
    low = low_dtype(values, layer.weight)
    if low is None or layer.weight.dtype != torch.float32 or hooked(layer):
        return layer(values)
    return _LowLinear.apply(values, layer.weight, layer.bias, low)


class _LowLinear(torch.autograd.Function):
    """x Wᵀ + b with the three products in `low`; the bias and the result in float32."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, low: torch.dtype
    ) -> Tensor:
        """(…, I) x → (…, O)."""
        rows = x.reshape(-1, x.size(-1))
        ctx.save_for_backward(rows, weight)
        ctx.has_bias, ctx.low = bias is not None, low
        out = mm(rows, weight.t(), low)
        if bias is not None:
            out += bias
        return out.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @once_differentiable  # the products' operands are low copies: no graph of the backward pass
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """The gradients of x, W and b that are needed."""
        rows, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.size(-1))
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if needs_x:
            grad_x = mm(grad_rows, weight, ctx.low).view(*grad.shape[:-1], weight.size(1))
        if needs_w:
            grad_w = mm(grad_rows.t(), rows, ctx.low)
        if needs_b and ctx.has_bias:
            grad_b = grad_rows.sum(0)
        return grad_x, grad_w, grad_b, None
