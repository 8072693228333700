"""Dropout whose mask compares uniform numbers with p: faster than Bernoulli draws on a CPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.modules.eager import eager_cpu


class Dropout(nn.Dropout):
    """nn.Dropout (same arguments and behaviour) drawing its CPU mask as uniform ≥ p.

    PyTorch's CPU dropout draws its mask with `bernoulli_`, which took 4.4 ms for a 28 × 70 × 256
    batch here where `rand_like` took 1.6; the matched recipe drops four such tensors per update.
    """

    def forward(self, input: Tensor) -> Tensor:
        """Zero each element with probability p and scale the rest by 1 / (1 − p) in training."""
        if not self.training or self.p == 0.0:
            return input
        # bf16/fp16 uniforms come in steps of 1/256 (1/2048): drawn in their own type, the
        # rate would be off (p = 0.2 dropped 0.2031); those keep nn.Dropout's Bernoulli draws
        if (
            self.inplace
            or self.p >= 1.0
            or input.dtype not in (torch.float32, torch.float64)
            or not eager_cpu(input)
        ):
            return super().forward(input)
        keep = torch.rand_like(input).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1/(1-p)
        return input * keep
