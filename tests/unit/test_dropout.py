"""modules/dropout.py behaves as nn.Dropout: rate, scale, gradient, identity outside training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.modules.dropout import Dropout


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_drops_at_rate_p_and_scales_the_rest(p: float) -> None:
    """About p of the elements are zero, the rest are x / (1 − p), and the gradient is the mask
    times the same scale."""
    torch.manual_seed(0)
    x = torch.rand(200, 500) + 0.5  # no zeros of its own
    x.requires_grad_(True)
    y = Dropout(p).train()(x)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 0.01  # 100,000 draws: σ ≈ 0.0016
    torch.testing.assert_close(y[~dropped], (x / (1 - p))[~dropped])
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, (~dropped).float() / (1 - p))


def test_identity_in_eval_and_at_zero_rate() -> None:
    """No change when evaluating or when p = 0, as nn.Dropout."""
    x = torch.randn(4, 5)
    assert torch.equal(Dropout(0.3).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_masks_follow_the_seed() -> None:
    """The same seed draws the same mask (runs and resumes stay reproducible)."""
    x = torch.randn(30, 40)
    torch.manual_seed(5)
    first = Dropout(0.4).train()(x)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.4).train()(x), first)


def test_other_cases_are_nn_dropout() -> None:
    """In-place, p = 1 and half-precision inputs take nn.Dropout's own path (bf16 uniforms come
    in steps of 1/256, which would shift the rate)."""
    x = torch.randn(6, 7)
    assert not Dropout(1.0).train()(x).any()
    torch.manual_seed(1)
    target = x.clone()
    ours = Dropout(0.5, inplace=True).train()(target)
    assert ours is target  # changed in place, as asked
    torch.manual_seed(1)
    theirs = nn.Dropout(0.5, inplace=True).train()(x.clone())
    assert torch.equal(ours, theirs)
    half = torch.randn(50, 60).bfloat16()
    torch.manual_seed(2)
    ours = Dropout(0.2).train()(half)
    torch.manual_seed(2)
    assert torch.equal(ours, nn.Dropout(0.2).train()(half))
