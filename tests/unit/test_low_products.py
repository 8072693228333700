"""bf16-products (`modules/low_products.py`): the products over whole sequences in bf16 while
training, within bf16's rounding of float32; decoding and everything outside the block untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.modules import gru, low_products
from seq2seq.modules.low_products import low_precision_products

BF16 = torch.bfloat16


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def _linear_case(bias: bool = True) -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(24, 40, bias=bias), torch.randn(3, 11, 24, requires_grad=True)


def _linear_grads(layer: nn.Linear, x: torch.Tensor, low: bool) -> list[torch.Tensor]:
    x.grad = layer.weight.grad = None
    if layer.bias is not None:
        layer.bias.grad = None
    scope = low_precision_products(BF16) if low else torch.enable_grad()
    with scope:
        out = low_products.linear(layer, x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad, layer.weight.grad] + ([] if layer.bias is None else [layer.bias.grad])
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    return [out.detach(), *grads]  # type: ignore[list-item]


@pytest.mark.parametrize("bias", [True, False])
def test_linear_in_the_block_is_float32_to_bf16_rounding(bias: bool) -> None:
    """The output and the gradients of x and W, the three products, within 1 % of float32 (8
    bits of mantissa) and not equal to them: they did run in bf16. The bias's gradient is a sum
    in float32, as before."""
    layer, x = _linear_case(bias)
    exact, low = _linear_grads(layer, x, low=False), _linear_grads(layer, x, low=True)
    assert len(low) == len(exact) == (4 if bias else 3)
    for got, expected in zip(low[:3], exact[:3], strict=True):
        assert got.shape == expected.shape
        assert 0 < _relative(got, expected) < 1e-2
    if bias:
        assert _relative(low[3], exact[3]) < 1e-6


def test_linear_keeps_float32_for_single_steps_and_frozen_layers() -> None:
    """(B, ·) values (one step of a recurrence) and (B, 1, ·) ones, and a layer with nothing to
    train over values without a gradient, take the layer's own float32 forward in the block."""
    layer, x = _linear_case()
    step = x[:, 0]
    with low_precision_products(BF16):
        assert torch.equal(low_products.linear(layer, step), layer(step))
        assert torch.equal(low_products.linear(layer, x[:, :1]), layer(x[:, :1]))
        layer.requires_grad_(False)
        frozen = x.detach()
        assert torch.equal(low_products.linear(layer, frozen), layer(frozen))
        assert not torch.equal(low_products.linear(layer, x), layer(x))  # x still needs one


def test_linear_outside_the_block_or_without_a_graph_is_the_layer_itself() -> None:
    """Outside the block, in decoding (no graph) within it, and for a hooked layer: the layer's
    own forward, bit for bit."""
    layer, x = _linear_case()
    plain = layer(x)
    assert torch.equal(low_products.linear(layer, x), plain)
    with low_precision_products(BF16):
        with torch.no_grad():
            assert torch.equal(low_products.linear(layer, x), plain)
        handle = layer.register_forward_hook(lambda module, args, out: out + 1)
        assert torch.equal(low_products.linear(layer, x), plain + 1)
        handle.remove()
        assert not torch.equal(low_products.linear(layer, x), plain)
    assert torch.equal(low_products.linear(layer, x), plain)


def _gru_grads(
    rnn: nn.GRU, x: torch.Tensor, h0: torch.Tensor, padding: torch.Tensor, low: bool
) -> list[torch.Tensor]:
    for tensor in (x, h0, *rnn.parameters()):
        tensor.grad = None
    with low_precision_products(BF16) if low else torch.enable_grad():
        outputs, final = gru.run(rnn, x, h0, padding)
    # backward outside the block, as the trainer runs it: the layer kept its dtype
    (outputs.sin().sum() + final.cos().sum()).backward()
    return [outputs.detach(), final.detach(), x.grad, h0.grad] + [  # type: ignore[list-item]
        p.grad for p in rnn.parameters()
    ]


@pytest.mark.parametrize("bidirectional", [True, False])
def test_gru_input_side_in_bf16_stays_within_its_rounding(bidirectional: bool) -> None:
    """The input gates and their gradients in bf16 (the recurrence in float32): outputs and every
    gradient within 2 % of float32, and the input side's gradients not equal to them."""
    torch.manual_seed(0)
    rnn = nn.GRU(16, 12, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(4, 9, 16, requires_grad=True)
    h0 = torch.randn(2 if bidirectional else 1, 4, 12, requires_grad=True)
    padding = torch.arange(9)[None, :] >= torch.tensor([9, 3, 6, 1])[:, None]
    exact = _gru_grads(rnn, x, h0, padding, low=False)
    low = _gru_grads(rnn, x, h0, padding, low=True)
    errors = [_relative(got, expected) for got, expected in zip(low, exact, strict=True)]
    assert max(errors) < 2e-2, errors
    grad_x, grad_w_ih, grad_w_hh = low[2], low[4], low[5]
    assert not torch.equal(grad_x, exact[2]) and not torch.equal(grad_w_ih, exact[4])
    assert not torch.equal(grad_w_hh, exact[5])
    assert torch.equal(low[2][1, 3:], torch.zeros_like(low[2][1, 3:]))  # padding: no gradient


def test_low_dtype_needs_float32_a_gradient_and_the_block() -> None:
    """The low dtype only inside the block, for float32 values with a gradient to be made."""
    values = torch.ones(2, 3, requires_grad=True)
    with low_precision_products(BF16):
        assert low_products.low_dtype(values.detach()) is None
        assert low_products.low_dtype(values.detach(), values) is BF16  # a weight needs one
    assert low_products.low_dtype(values) is None
    with low_precision_products(BF16):
        assert low_products.low_dtype(values) is BF16
        assert low_products.low_dtype(values.double()) is None
        with torch.no_grad():
            assert low_products.low_dtype(values) is None
        with low_precision_products(torch.float16):
            assert low_products.low_dtype(values) is torch.float16
        assert low_products.low_dtype(values) is BF16
    assert low_products.low_dtype(values) is None


def test_mm_pads_odd_shapes_and_returns_the_product_s_own_shape() -> None:
    """Batched operands of sizes no multiple of PAD: the result has the product's shape, within
    bf16's rounding of float32 (the zero padding adds nothing)."""
    torch.manual_seed(0)
    left, right = torch.randn(2, 37, 70), torch.randn(2, 70, 45)
    got = low_products.mm(left, right, BF16)
    assert got.shape == (2, 37, 45) and got.dtype == torch.float32
    assert 0 < _relative(got, left @ right) < 1e-2
    assert torch.equal(low_products.mm(left, right, None), left @ right)
