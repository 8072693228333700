"""The output projection and the token loss in one pass: chunks of rows are projected to the
vocabulary, scored and differentiated at once, so the (N, V) logits, log-probabilities and their
gradient are never held whole (at an 8k vocabulary this layer is most of a training step)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.modules.eager import autocast_dtype

CHUNK_ROWS = 512  # rows per chunk: a (512, 8000) float32 block is 16 MB, within a large L3
PAD_ROWS = 64  # low-precision chunks are padded to a multiple of this many rows

_products = threading.local()  # the dtype `low_precision_output` set in this thread


@contextlib.contextmanager
def low_precision_output(dtype: torch.dtype) -> Iterator[None]:
    """Within this block the fused loss multiplies in `dtype` (bf16 or fp16) and the rest of
    the model keeps its own: the output layer holds most of the FLOPs at an 8k vocabulary,
    while recurrent steps gain little from autocast on a CPU and pay its casts."""
    outer = getattr(_products, "dtype", None)
    _products.dtype = dtype
    try:
        yield
    finally:
        _products.dtype = outer


class _ProjectedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of softmax(x Wᵀ + b) against targets; gradients made in forward.

    With `low` (bf16 or fp16) the three products take their operands in that type, as autocast
    would, while the softmax, its gradient and every sum stay in float32.
    """

    @staticmethod
    def forward(
        ctx: Any,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        smoothing: float,
        chunk: int,
        low: torch.dtype | None,
    ) -> Tensor:
        V = weight.size(0)
        total = features.new_zeros(())
        grad_x = torch.empty_like(features)
        grad_w = torch.zeros_like(weight)
        grad_b = None if bias is None else torch.zeros_like(bias)
        w = weight if low is None else weight.to(low)
        # one block for every chunk's logits: glibc's malloc gave each freed (chunk, V) block
        # back to the kernel, so a fresh block per chunk paid ~4,000 page faults (16 MB) anew
        rows = min(chunk, features.size(0))
        block = features.new_empty(rows, V)
        lows = None if low is None else _LowBuffers(_padded(rows), weight, low)
        for start in range(0, features.size(0), chunk):
            x, t = features[start : start + chunk], targets[start : start + chunk]
            n = x.size(0)
            if lows is None:
                logits = torch.mm(x, w.t(), out=block[:n])
            else:
                x = lows.take(x)
                logits = block[:n].copy_(torch.mm(x, w.t(), out=lows.logits[: x.size(0)])[:n])
            if bias is not None:
                logits.add_(bias)
            picked = logits.gather(1, t[:, None]).squeeze(1)
            mean = logits.mean(1) if smoothing else None
            top = logits.amax(1, keepdim=True)
            exps = logits.sub_(top).exp_()  # in place: the logits are not needed any more
            sums = exps.sum(1, keepdim=True)
            lse = (top + sums.log()).squeeze(1)
            loss = lse - picked
            if mean is not None:
                loss = (1.0 - smoothing) * loss + smoothing * (lse - mean)
            total += loss.sum()
            grad = exps.div_(sums)  # softmax − (1 − ε) one-hot − ε / V
            if smoothing:
                grad.sub_(smoothing / V)
            grad[torch.arange(n, device=t.device), t] -= 1.0 - smoothing
            if grad_b is not None:
                grad_b += grad.sum(0)
            if lows is None:
                torch.mm(grad, w, out=grad_x[start : start + chunk])  # no temporary to copy
                grad_w.addmm_(grad.t(), x)
            else:
                grad = lows.logits[: x.size(0)]  # padding rows: zero, adding nothing to W's grad
                grad[:n].copy_(exps)
                grad[n:].zero_()
                grad_x[start : start + chunk] = torch.mm(grad, w, out=lows.grad_x[: x.size(0)])[:n]
                grad_w += torch.mm(grad.t(), x, out=lows.grad_w)  # rounded once per chunk
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.saved_tensors
        grad_b = None if grad_b is None else grad_b * grad_total
        return grad_x * grad_total, grad_w * grad_total, grad_b, None, None, None, None


def _padded(rows: int) -> int:
    return -(-rows // PAD_ROWS) * PAD_ROWS


class _LowBuffers:
    """The bf16/fp16 operands and products of every chunk, allocated once, chunks padded to few
    row counts: oneDNN's products of a new shape per batch left glibc's heap fragmented."""

    def __init__(self, rows: int, weight: Tensor, low: torch.dtype) -> None:
        V, H = weight.shape
        self.x = weight.new_empty(rows, H, dtype=low)
        self.logits = weight.new_empty(rows, V, dtype=low)
        self.grad_x = weight.new_empty(rows, H, dtype=low)
        self.grad_w = weight.new_empty(V, H, dtype=low)

    def take(self, x: Tensor) -> Tensor:
        """x in the low dtype, with zero rows up to a multiple of PAD_ROWS."""
        n = x.size(0)
        padded = self.x[: _padded(n)]
        padded[:n].copy_(x)
        padded[n:].zero_()
        return padded


def sequence_loss(
    logits: Tensor, targets: Tensor, pad_id: int = 0, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed loss over real tokens and the number of real tokens (the reference path).

    Args:
        logits: (B, T, V) unnormalised scores (log-probabilities work too: they are normalised).
        targets: (B, T) expected ids, `pad_id` where there is no token.
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=pad_id,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return total, (targets != pad_id).sum()


def projected_cross_entropy(
    features: Tensor,
    generator: nn.Linear,
    targets: Tensor,
    pad_id: int = 0,
    label_smoothing: float = 0.0,
    chunk: int = CHUNK_ROWS,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Summed token loss of `generator(features)` against `targets`, and the number of tokens.

    Equal to sequence_loss(generator(features), targets, …) in value and gradients (within
    rounding when the products run in bf16/fp16: `matmul_dtype`, else `low_precision_output`'s,
    else autocast's).
    Args: features (B, T, H) or (N, H); targets (B, T) or (N,), `pad_id` where no token.
    """
    keep = targets != pad_id
    x = features.reshape(-1, features.size(-1))[keep.reshape(-1)]  # padding rows cost nothing
    t = targets.reshape(-1)[keep.reshape(-1)]
    count = keep.sum()
    if x.dtype != torch.float32:
        x = x.float()  # autocast: the softmax and its gradient stay in float32
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or generator.weight.requires_grad)
    if not needs_grad or t.numel() == 0:
        logits = F.linear(x, generator.weight.float(), _float(generator.bias))
        total = F.cross_entropy(logits, t, reduction="sum", label_smoothing=label_smoothing)
        return total, count
    low = matmul_dtype or getattr(_products, "dtype", None) or autocast_dtype(x.device.type)
    if low == generator.weight.dtype:
        low = None
    with torch.autocast(x.device.type, enabled=False):
        total = _ProjectedCrossEntropy.apply(
            x, generator.weight, generator.bias, t, label_smoothing, chunk, low
        )
    return total, count


def _float(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.float()
