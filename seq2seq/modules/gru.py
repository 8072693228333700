"""A GRU over whole padded sequences on the CPU, with a hand-written backward pass.

PyTorch's CPU GRU differentiates each time step's small operations one by one, and over packed
sequences (the encoder's variable lengths) it also projects the input step by step. Here the
input projection of all steps is one product; a bidirectional layer runs both directions in one
loop (one batched product per step, which two threads can split); padding costs no masking
operation (the update gate's input is +∞ there, so z = 1 and the state passes through exactly);
and the backward pass keeps each step's gate gradients, so the weights' gradients are one
product over all steps instead of one per step. Values and gradients equal `nn.GRU`'s, whose
parameters (and so checkpoints) this uses unchanged.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from seq2seq.modules import low_products
from seq2seq.modules.eager import autocast_on_cpu, eager_cpu

aten = torch.ops.aten


def supports(rnn: nn.Module, inputs: Tensor) -> TypeGuard[nn.GRU]:
    """True when `run` may stand in for `rnn` on these inputs.

    That is a plain batch-first nn.GRU with biases, float32 or float64 on the CPU, eager, without
    autocast, building a graph. Otherwise PyTorch's own GRU serves: cuDNN on a GPU; int8 exports,
    whose GRU is another class; tracing, which must not bake in the step loop's count; and
    decoding, where its forward pass (no graph to record) encoded 64 × 25 test-like batches in
    8.0 ms against this module's 14.6.
    """
    return (
        eager_cpu(inputs)  # first: under tracing, the checks below would be recorded
        and torch.is_grad_enabled()
        and not autocast_on_cpu()
        and type(rnn) is nn.GRU
        and rnn.batch_first
        and rnn.bias
        and inputs.dtype in (torch.float32, torch.float64)
        and inputs.dtype == rnn.weight_ih_l0.dtype
        and inputs.dim() == 3
        and inputs.size(1) > 0
    )


def run(
    rnn: nn.GRU, inputs: Tensor, initial: Tensor, padding: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """`rnn` over (B, T, I) inputs from (L·D, B, H) states → outputs (B, T, D·H), final (L·D, B, H).

    Positions where (B, T) `padding` is True are skipped (outputs there are zero); the inputs
    there must be finite, as embeddings and states are: a skipped step still computes its gates
    (then discards them exactly), and NaN would survive the discarding.
    """
    directions = 2 if rnn.bidirectional else 1
    layer_input, finals = inputs, []
    for layer in range(rnn.num_layers):
        if layer > 0:  # between layers, as nn.GRU places its dropout
            layer_input = F.dropout(layer_input, rnn.dropout, rnn.training)
        params = [_stacked(rnn, name, layer, directions) for name in ("ih", "hh")]
        biases = [_stacked(rnn, name, layer, directions, "bias") for name in ("ih", "hh")]
        states = initial[layer * directions : (layer + 1) * directions]
        layer_input, final = _GRULayer.apply(
            layer_input, states, *params, *biases, padding, low_products.low_dtype(inputs, *params)
        )
        finals.append(final)
    outputs = layer_input
    if padding is not None:
        outputs = outputs.masked_fill(padding.unsqueeze(-1), 0.0)
    return outputs, torch.cat(finals)


def _stacked(rnn: nn.GRU, name: str, layer: int, directions: int, kind: str = "weight") -> Tensor:
    """One layer's parameter for every direction, stacked: (D, 3H, ·)."""
    suffixes = ["", "_reverse"][:directions]
    parts = [getattr(rnn, f"{kind}_{name}_l{layer}{suffix}") for suffix in suffixes]
    return parts[0].unsqueeze(0) if directions == 1 else torch.stack(parts)


def _run_order(values: Tensor) -> Tensor:
    """(T, D, …) in time order ⇄ run order: direction 1 reads time backwards (its own inverse)."""
    if values.size(1) == 1:
        return values
    return torch.stack([values[:, 0], values[:, 1].flip(0)], 1)


def _steps(values: Tensor, start: int = 0, stop: int | None = None) -> tuple[Tensor, ...]:
    """Views of each step of (T, …) `values`, last dimension cut to [start, stop)."""
    return values[..., start:stop].unbind(0)


def _input_gates(
    x: Tensor, w_ih: Tensor, b_ih: Tensor, padding: Tensor | None, low: torch.dtype | None
) -> Tensor:
    """W_i x + b_i of every step and direction, in run order: (T, D, B, 3H); the product in
    `low` when given (`modules/low_products.py`)."""
    B, T, _ = x.shape
    D, H3 = w_ih.shape[:2]
    flat = x.reshape(B * T, -1)
    gates = x.new_empty(T, D, B, H3)
    for d in range(D):
        if low is None:
            products = torch.addmm(b_ih[d], flat, w_ih[d].t())
        else:
            products = low_products.mm(flat, w_ih[d].t(), low).add_(b_ih[d])
        by_time = products.view(B, T, H3).transpose(0, 1)
        gates[:, d] = by_time if d == 0 else by_time.flip(0)  # run order
    if padding is not None:  # z = σ(+∞) = 1 exactly: h' = lerp(n, h, 1) = h
        skip = _run_order(padding.t().unsqueeze(1).expand(T, D, B))
        H = H3 // 3
        gates[..., H : 2 * H].masked_fill_(skip.unsqueeze(-1), float("inf"))
    return gates


class _GRULayer(torch.autograd.Function):
    """One layer, D ≤ 2 directions in lockstep. Buffers are (T, D, B, ·) in run order: step k
    is time k for direction 0 and time T − 1 − k for direction 1."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        initial: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor,
        b_hh: Tensor,
        padding: Tensor | None,
        low: torch.dtype | None,
    ) -> tuple[Tensor, Tensor]:
        """(B, T, I) x, (D, B, H) initial, stacked parameters → outputs (B, T, D·H), final;
        the products over all steps in `low` when given (bf16-products), in backward too."""
        B, T, _ = x.shape
        D, _, H = initial.shape
        ctx.low = low
        gates_i = _input_gates(x, w_ih, b_ih, padding, low)
        gates_h = x.new_empty(T, D, B, 3 * H)  # W_h h + b_h; its n third is needed again
        rz = x.new_empty(T, D, B, 2 * H)
        n = x.new_empty(T, D, B, H)
        states = x.new_empty(T, D, B, H)
        w_hh_t, b_hh_rows = w_hh.transpose(1, 2), b_hh.unsqueeze(1)
        # per-step views made once: indexing in the loop would cost more than the arithmetic
        i_rz, i_n = _steps(gates_i, 0, 2 * H), _steps(gates_i, 2 * H, 3 * H)
        h_all, h_rz, h_n = _steps(gates_h), _steps(gates_h, 0, 2 * H), _steps(gates_h, 2 * H, 3 * H)
        rz_all, r, z = _steps(rz), _steps(rz, 0, H), _steps(rz, H, 2 * H)
        n_k, out_k = _steps(n), _steps(states)
        h = initial
        for k in range(T):
            torch.baddbmm(b_hh_rows, h, w_hh_t, out=h_all[k])
            torch.add(i_rz[k], h_rz[k], out=rz_all[k]).sigmoid_()
            torch.addcmul(i_n[k], r[k], h_n[k], out=n_k[k]).tanh_()
            h = torch.lerp(n_k[k], h, z[k], out=out_k[k])  # (1 − z) n + z h
        ctx.save_for_backward(x, initial, w_ih, w_hh, states, rz, n, gates_h)
        outputs = _run_order(states).permute(2, 0, 1, 3).reshape(B, T, D * H)
        return outputs, h.clone()

    @staticmethod
    @once_differentiable  # the loop writes into buffers: no graph of the backward pass
    def backward(ctx: Any, grad_outputs: Tensor, grad_final: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients of x, the initial states and the stacked parameters, step by step."""
        x, initial, w_ih, w_hh, states, rz, n, gates_h = ctx.saved_tensors
        T, D, B, H = states.shape
        grad_states = _run_order(grad_outputs.view(B, T, D, H).permute(1, 2, 0, 3))
        previous = torch.cat([initial.unsqueeze(0), states[:-1]])  # the state each step read
        grad_h_gates = x.new_empty(T, D, B, 3 * H)  # ∂ of r's and z's sums, ∂ (W_hn h + b_hn)
        grad_n_input = x.new_empty(T, D, B, H)  # ∂ (W_in x + b_in)
        grad_rz = x.new_empty(D, B, 2 * H)
        r, z, rz_k, n_k = _steps(rz, 0, H), _steps(rz, H, 2 * H), _steps(rz), _steps(n)
        h_n, previous_k, grad_in = (
            _steps(gates_h, 2 * H, 3 * H),
            _steps(previous),
            _steps(grad_n_input),
        )
        grad_hg, grad_hg_rz = _steps(grad_h_gates), _steps(grad_h_gates, 0, 2 * H)
        grad_hg_n, grad_out = _steps(grad_h_gates, 2 * H, 3 * H), _steps(grad_states)
        grad_r, grad_z = grad_rz[..., :H], grad_rz[..., H:]
        grad_h = grad_final + grad_out[T - 1]
        for k in range(T - 1, -1, -1):
            grad_n = torch.addcmul(grad_h, grad_h, z[k], value=-1.0)  # ∂h'/∂n = 1 − z
            aten.tanh_backward.grad_input(grad_n, n_k[k], grad_input=grad_in[k])
            torch.mul(grad_in[k], r[k], out=grad_hg_n[k])
            torch.mul(grad_in[k], h_n[k], out=grad_r)
            torch.mul(previous_k[k] - n_k[k], grad_h, out=grad_z)  # ∂h'/∂z = h − n
            aten.sigmoid_backward.grad_input(grad_rz, rz_k[k], grad_input=grad_hg_rz[k])
            direct = grad_h * z[k] if k == 0 else torch.addcmul(grad_out[k - 1], grad_h, z[k])
            grad_h = torch.baddbmm(direct, grad_hg[k], w_hh)
        grad_x, *grad_params = _input_side_grads(
            ctx.needs_input_grad[0], x, w_ih, grad_h_gates, grad_n_input, previous, ctx.low
        )
        return (grad_x, grad_h, *grad_params, None, None)


def _input_side_grads(
    grad_x_needed: bool,
    x: Tensor,
    w_ih: Tensor,
    grad_h_gates: Tensor,
    grad_n_input: Tensor,
    previous: Tensor,
    low: torch.dtype | None,
) -> tuple[Tensor | None, ...]:
    """Gradients of x, the weights and biases from every step's gate gradients at once; the
    products in `low` when given, summed over the steps inside each product."""
    B, T, _ = x.shape
    _, D, _, H = previous.shape

    def batch_major(values: Tensor) -> Tensor:  # run order (T, D, B, C) → (D, B·T, C)
        return _run_order(values).permute(1, 2, 0, 3).reshape(D, B * T, values.size(-1))

    grad_h_gates, grad_n_input = batch_major(grad_h_gates), batch_major(grad_n_input)
    grad_rz = grad_h_gates[..., : 2 * H]  # r's and z's sums take W_i x and W_h h alike
    flat_x = x.reshape(B * T, -1)
    grad_x = None
    if low is not None:  # every gate's gradient side by side: one product per direction
        grad_gates = torch.cat([grad_rz, grad_n_input], 2)
        if grad_x_needed:
            grad_x = low_products.mm(grad_gates[0], w_ih[0], low)
            for d in range(1, D):
                grad_x += low_products.mm(grad_gates[d], w_ih[d], low)
            grad_x = grad_x.view(x.shape)
        grad_w_ih = low_products.mm(grad_gates.transpose(1, 2), flat_x, low)
        grad_w_hh = low_products.mm(grad_h_gates.transpose(1, 2), batch_major(previous), low)
    else:
        if grad_x_needed:
            grad_x = torch.zeros_like(flat_x)
            for d in range(D):
                grad_x.addmm_(grad_rz[d], w_ih[d, : 2 * H])
                grad_x.addmm_(grad_n_input[d], w_ih[d, 2 * H :])
            grad_x = grad_x.view(x.shape)
        grad_w_ih = torch.cat(
            [grad_rz.transpose(1, 2) @ flat_x, grad_n_input.transpose(1, 2) @ flat_x], 1
        )
        grad_w_hh = torch.bmm(grad_h_gates.transpose(1, 2), batch_major(previous))
    grad_b_hh = grad_h_gates.sum(1)
    grad_b_ih = torch.cat([grad_b_hh[:, : 2 * H], grad_n_input.sum(1)], 1)
    return grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
