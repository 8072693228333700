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

from seq2seq.modules.eager import active_autocast_dtype, dtype_scope

CHUNK_ROWS = 512  # rows per chunk: a (512, 8000) float32 block is 16 MB, within a large L3
PAD_ROWS = 64  # low-precision chunks are padded to a multiple of this many rows

_output_dtype = threading.local()  # the dtype `low_precision_output` set in this thread


@contextlib.contextmanager
def low_precision_output(dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Within this block the fused loss multiplies in `dtype`; the rest of the model keeps its own.

    The output layer holds most of the FLOPs at an 8k vocabulary, while recurrent steps gain
    little from autocast on a CPU and pay its casts. Meant for bf16: in fp16 the unscaled
    gradient's small probabilities would round to zero (a loss scaler scales only later).
    """
    with dtype_scope(_output_dtype, dtype):
        yield


class _ProjectedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of softmax(x Wᵀ + b) against targets; gradients made in forward.

    With `low` (bf16, or fp16 when asked for) the three products take operands in that type and
    round their results to it, as autocast would; the softmax, its gradient and the sums over
    chunks stay in float32.
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
        # one block for every chunk's logits: glibc's malloc gave each freed (chunk, V) block
        # back to the kernel, so a fresh block per chunk paid ~4,000 page faults (16 MB) anew
        rows = min(chunk, features.size(0))
        block = features.new_empty(rows, V)
        products = _Float32Products(weight) if low is None else _LowProducts(rows, weight, low)
        for start in range(0, features.size(0), chunk):
            x, t = features[start : start + chunk], targets[start : start + chunk]
            logits = products.logits(x, block[: x.size(0)])
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
            grad[torch.arange(t.numel(), device=t.device), t] -= 1.0 - smoothing
            if grad_b is not None:
                grad_b += grad.sum(0)
            products.gradients(grad, grad_x[start : start + chunk], grad_w)
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.saved_tensors
        grad_b = None if grad_b is None else grad_b * grad_total
        return grad_x * grad_total, grad_w * grad_total, grad_b, None, None, None, None


class _Float32Products:
    """A chunk's three products in the weight's own dtype, written in place."""

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight
        self.x = weight.new_empty(0)

    def logits(self, x: Tensor, out: Tensor) -> Tensor:
        """x Wᵀ into `out`; x is kept for the weight's gradient."""
        self.x = x
        return torch.mm(x, self.weight.t(), out=out)

    def gradients(self, grad: Tensor, grad_x: Tensor, grad_w: Tensor) -> None:
        """grad_x = grad W; grad_w += gradᵀ x."""
        torch.mm(grad, self.weight, out=grad_x)  # no temporary to copy
        grad_w.addmm_(grad.t(), self.x)


class _LowProducts(_Float32Products):
    """The three products in bf16/fp16, in buffers made once per batch and padded to multiples
    of PAD_ROWS rows: without the padding, a new product shape in almost every batch cost oneDNN
    a new kernel and fragmented glibc's heap (the matched training's peak RSS went from 686 to
    1,748 MiB)."""

    def __init__(self, rows: int, weight: Tensor, low: torch.dtype) -> None:
        super().__init__(weight.to(low))
        V, H = weight.shape
        padded = _padded(rows)
        self.x_low = weight.new_empty(padded, H, dtype=low)
        self.logits_low = weight.new_empty(padded, V, dtype=low)  # then the gradient's
        self.grad_x_low = weight.new_empty(padded, H, dtype=low)
        self.grad_w_low = weight.new_empty(V, H, dtype=low)

    def logits(self, x: Tensor, out: Tensor) -> Tensor:
        """x Wᵀ into `out` (float32), from x in the low type with zero rows as padding."""
        n = x.size(0)
        self.x = self.x_low[: _padded(n)]
        self.x[:n].copy_(x)
        self.x[n:].zero_()
        logits = torch.mm(self.x, self.weight.t(), out=self.logits_low[: self.x.size(0)])
        return out.copy_(logits[:n])

    def gradients(self, grad: Tensor, grad_x: Tensor, grad_w: Tensor) -> None:
        """As the float32 products, each result rounded once to the low type and summed into
        `grad_w` in float32. The padding rows add nothing to W's gradient: their x is zero, and
        so is their gradient (the logits of zero rows, zeroed again so as not to rely on it)."""
        n, low_grad = grad.size(0), self.logits_low[: self.x.size(0)]
        low_grad[:n].copy_(grad)
        low_grad[n:].zero_()
        grad_x.copy_(torch.mm(low_grad, self.weight, out=self.grad_x_low[: self.x.size(0)])[:n])
        grad_w += torch.mm(low_grad.t(), self.x, out=self.grad_w_low)


def _padded(rows: int) -> int:
    """`rows` rounded up to a multiple of PAD_ROWS."""
    return -(-rows // PAD_ROWS) * PAD_ROWS


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

    Equal to sequence_loss(generator(features), targets, …) in value and gradients. When
    gradients are made the products may run in a lower type, within its rounding: `matmul_dtype`,
    else `low_precision_output`'s, else bf16 under bf16 autocast (fp16 autocast keeps float32
    here, as its unscaled gradient would round small probabilities to zero).
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
    low = matmul_dtype or getattr(_output_dtype, "dtype", None)
    if low is None and active_autocast_dtype(x.device.type) == torch.bfloat16:
        low = torch.bfloat16
    if low == generator.weight.dtype:
        low = None
    with torch.autocast(x.device.type, enabled=False):
        total = _ProjectedCrossEntropy.apply(
            x, generator.weight, generator.bias, t, label_smoothing, chunk, low
        )
    return total, count


def _float(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.float()
