"""The output projection and the token loss in one pass: chunks of rows are projected to the
vocabulary, scored and differentiated at once, so the (N, V) logits, log-probabilities and their
gradient are never held whole (at an 8k vocabulary this layer is most of a training step)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHUNK_ROWS = 512  # rows per chunk: a (512, 8000) float32 block is 16 MB, within a large L3


class _ProjectedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of softmax(x Wᵀ + b) against targets; gradients made in forward."""

    @staticmethod
    def forward(
        ctx: Any,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        smoothing: float,
        chunk: int,
    ) -> Tensor:
        V = weight.size(0)
        total = features.new_zeros(())
        grad_x = torch.empty_like(features)
        grad_w = torch.zeros_like(weight)
        grad_b = None if bias is None else torch.zeros_like(bias)
        # one block for every chunk's logits: glibc's malloc gave each freed (chunk, V) block
        # back to the kernel, so a fresh block per chunk paid ~4,000 page faults (16 MB) anew
        block = features.new_empty(min(chunk, features.size(0)), V)
        for start in range(0, features.size(0), chunk):
            x, t = features[start : start + chunk], targets[start : start + chunk]
            logits = torch.mm(x, weight.t(), out=block[: x.size(0)])
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
            torch.mm(grad, weight, out=grad_x[start : start + chunk])  # no temporary to copy
            grad_w.addmm_(grad.t(), x)
            if grad_b is not None:
                grad_b += grad.sum(0)
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.saved_tensors
        grad_b = None if grad_b is None else grad_b * grad_total
        return grad_x * grad_total, grad_w * grad_total, grad_b, None, None, None


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
) -> tuple[Tensor, Tensor]:
    """Summed token loss of `generator(features)` against `targets`, and the number of tokens.

    Equal to sequence_loss(generator(features), targets, …) in value and gradients.
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
    with torch.autocast(x.device.type, enabled=False):
        total = _ProjectedCrossEntropy.apply(
            x, generator.weight, generator.bias, t, label_smoothing, chunk
        )
    return total, count


def _float(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.float()
