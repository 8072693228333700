"""One decoding step of a decoder's nn.GRU or nn.LSTM on the CPU, with the first layer's input
gates looked up per token.

When the first layer's input starts with the previous token's embedding, that part of its input
product, e W_ihᵀ + b_ih, depends on the token alone: a table E W_ihᵀ + b_ih (V × 3H for a GRU,
V × 4H for an LSTM; 24 MB for 8,000 pieces and H = 256) holds it for every token, and a step
gathers rows where it would multiply. The rest of the input (input feeding, Bahdanau's context)
is multiplied by its own columns of W_ih. The table and contiguous copies of every Wᵀ are kept
in `modules/derived.py`'s caches and made again when a parameter they come from changes.

Measured on the matched benchmark model (AMD EPYC, one thread, identical outputs): greedy 1.09×
over the test set, beam 5 1.05× over 300 of its sentences (README, Performance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.modules.derived import DerivedCache
from seq2seq.modules.eager import autocast_on_cpu, eager_cpu, hooked

Hidden = Tensor | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class _Weights:
    """Each layer's Wᵀ (contiguous) and biases."""

    first_rest: Tensor | None  # (F, G): the first layer's W_ihᵀ rows for the input after E
    input_t: list[Tensor]  # layers ≥ 1: W_ihᵀ (H, G)
    input_bias: list[Tensor]
    hidden_t: list[Tensor]  # every layer: W_hhᵀ (H, G)
    hidden_bias: list[Tensor]


@dataclass(frozen=True)
class _Table:
    """(V, G) = E W_ih[:, :E]ᵀ + b_ih of the first layer, and E's width."""

    values: Tensor
    embedding_dim: int


_tables: DerivedCache[_Table] = DerivedCache()  # per RNN
_weights: DerivedCache[_Weights] = DerivedCache()


MAX_TABLE_BYTES = 256 * 2**20  # beyond this the table costs more memory than a step saves


def usable(rnn: nn.Module, embedding: nn.Module) -> bool:
    """Whether `step` may stand in for `rnn` on this step: a plain one-way nn.GRU or nn.LSTM
    with biases and no projection, and a plain embedding (no max_norm) of the same float dtype,
    neither with hooks, a table of at most MAX_TABLE_BYTES, in eager CPU decoding (no graph, no
    autocast, no dropout between layers)."""
    if type(rnn) not in (nn.GRU, nn.LSTM) or type(embedding) is not nn.Embedding:
        return False
    if hooked(rnn) or hooked(embedding) or embedding.max_norm is not None:
        return False
    assert isinstance(rnn, nn.RNNBase) and isinstance(embedding, nn.Embedding)
    weight = _parameter(rnn, "weight_ih_l0")
    return (
        not torch.is_grad_enabled()
        and eager_cpu(weight)
        and not autocast_on_cpu()
        and not rnn.bidirectional
        and rnn.bias
        and rnn.proj_size == 0
        and (not rnn.training or rnn.num_layers == 1 or rnn.dropout == 0)
        and weight.dtype in (torch.float32, torch.float64)
        and embedding.weight.dtype == weight.dtype
        and not weight.is_inference()
        and not embedding.weight.is_inference()
        and weight.size(1) >= embedding.embedding_dim
        and embedding.num_embeddings * weight.size(0) * weight.element_size() <= MAX_TABLE_BYTES
    )


def token_gates(rnn: nn.RNNBase, embedding: nn.Embedding, prev: Tensor) -> Tensor:
    """(B,) tokens → (B, G): the first layer's input gates from their embeddings (and b_ih)."""
    return _table(rnn, embedding).values.index_select(0, prev)


def prepare(rnn: nn.RNNBase, embedding: nn.Embedding) -> None:
    """Make the table and the transposes now (before decoding workers fork, so that they share
    them)."""
    _table(rnn, embedding)
    _transposes(rnn, embedding.embedding_dim)


def step(
    rnn: nn.RNNBase, gates: Tensor, rest: Tensor | None, hidden: Hidden
) -> tuple[Tensor, Hidden]:
    """One step of `rnn` whose first-layer input is [embedding; rest], given the embedding's
    `token_gates`: (B, H) top-layer output and the new (L, B, H) state (LSTM: (h, c))."""
    table = _tables.peek(rnn)
    if table is None:
        raise ValueError("no gate table for this RNN: call token_gates first")
    embedding_dim = table.embedding_dim
    if rnn.input_size - embedding_dim != (0 if rest is None else rest.size(-1)):
        raise ValueError(
            f"the RNN's input is {rnn.input_size} wide and the table covers {embedding_dim} "
            f"of it; the rest given is {0 if rest is None else rest.size(-1)} wide"
        )
    weights = _transposes(rnn, embedding_dim)
    lstm = isinstance(hidden, tuple)
    h_all, c_all = hidden if isinstance(hidden, tuple) else (hidden, None)
    new_h: list[Tensor] = []
    new_c: list[Tensor] = []
    for layer in range(rnn.num_layers):
        if layer == 0:
            input_gates = gates
            if rest is not None and weights.first_rest is not None:  # both or neither
                input_gates = torch.addmm(gates, rest, weights.first_rest)
        else:
            bias, transposed = weights.input_bias[layer - 1], weights.input_t[layer - 1]
            input_gates = torch.addmm(bias, new_h[-1], transposed)
        h = h_all[layer]
        hidden_gates = torch.addmm(weights.hidden_bias[layer], h, weights.hidden_t[layer])
        if lstm:
            assert c_all is not None
            h, c = _lstm_cell(input_gates, hidden_gates, c_all[layer])
            new_c.append(c)
        else:
            h = _gru_cell(input_gates, hidden_gates, h)
        new_h.append(h)
    stacked = torch.stack(new_h)
    return new_h[-1], (stacked, torch.stack(new_c)) if lstm else stacked


def _gru_cell(input_gates: Tensor, hidden_gates: Tensor, h: Tensor) -> Tensor:
    """PyTorch's GRU: r, z = σ(i_rz + h_rz); n = tanh(i_n + r ⊙ h_n); h' = n + z ⊙ (h − n)."""
    size = h.size(-1)
    reset_update = torch.sigmoid(input_gates[:, : 2 * size] + hidden_gates[:, : 2 * size])
    reset, update = reset_update[:, :size], reset_update[:, size:]
    candidate = torch.addcmul(input_gates[:, 2 * size :], reset, hidden_gates[:, 2 * size :])
    candidate = torch.tanh_(candidate)
    return torch.addcmul(candidate, update, h - candidate)


def _lstm_cell(input_gates: Tensor, hidden_gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """PyTorch's LSTM: gates i, f, g, o; c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g); h' = σ(o) ⊙ tanh(c')."""
    size = c.size(-1)
    gates = input_gates + hidden_gates
    in_forget = torch.sigmoid(gates[:, : 2 * size])
    cell_in = torch.tanh(gates[:, 2 * size : 3 * size])
    out = torch.sigmoid(gates[:, 3 * size :])
    c = torch.addcmul(in_forget[:, size:] * c, in_forget[:, :size], cell_in)
    return out * torch.tanh(c), c


def _table(rnn: nn.RNNBase, embedding: nn.Embedding) -> _Table:
    """E W_ih[:, :E]ᵀ + b_ih of the first layer, for every token."""
    weight, bias = _parameter(rnn, "weight_ih_l0"), _parameter(rnn, "bias_ih_l0")
    size = embedding.embedding_dim

    def make() -> _Table:
        with torch.no_grad():
            first = weight.detach()[:, :size]
            return _Table(torch.addmm(bias.detach(), embedding.weight.detach(), first.t()), size)

    sources = (embedding.weight, weight, bias)
    return _tables.get(rnn, sources, make)


def _transposes(rnn: nn.RNNBase, embedding_dim: int) -> _Weights:
    """The contiguous transposes and biases, from the parameters as they are now."""

    def make() -> _Weights:
        layers = range(rnn.num_layers)
        first = _parameter(rnn, "weight_ih_l0").detach()
        rest = first[:, embedding_dim:].t().contiguous() if first.size(1) > embedding_dim else None
        return _Weights(
            rest,
            [_parameter(rnn, f"weight_ih_l{n}").detach().t().contiguous() for n in layers[1:]],
            [_parameter(rnn, f"bias_ih_l{n}").detach() for n in layers[1:]],
            [_parameter(rnn, f"weight_hh_l{n}").detach().t().contiguous() for n in layers],
            [_parameter(rnn, f"bias_hh_l{n}").detach() for n in layers],
        )

    return _weights.get(rnn, tuple(rnn.parameters()), make)


def _parameter(rnn: nn.Module, name: str) -> Tensor:
    """One of the RNN's parameters by its PyTorch name (weight_ih_l0, bias_hh_l1, …)."""
    value = getattr(rnn, name)
    assert isinstance(value, Tensor)
    return value
