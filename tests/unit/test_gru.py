"""modules/gru.py equals PyTorch's GRU (packed for padded batches) in values and every gradient,
and steps aside wherever it must."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.modules import gru
from seq2seq.modules.encoders import RNNEncoder

# (layers, bidirectional, hidden): the matched encoder's layer, the decoder's, stacks of both
LAYOUTS = [
    pytest.param(1, True, 6, id="bidirectional"),
    pytest.param(1, False, 5, id="one-direction"),
    pytest.param(2, True, 4, id="two-bidirectional-layers"),
    pytest.param(3, False, 3, id="three-layers"),
]
LENGTHS = [7, 1, 4, 7, 2]  # the longest, a single token, several paddings


def _case(layers: int, bidirectional: bool, hidden: int):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    rnn = nn.GRU(3, hidden, layers, batch_first=True, bidirectional=bidirectional).double()
    directions = 2 if bidirectional else 1
    B, T = len(LENGTHS), max(LENGTHS)
    x = torch.randn(B, T, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers * directions, B, hidden, generator=gen, dtype=torch.float64)
    h0.requires_grad_(True)
    lengths = torch.tensor(LENGTHS)
    padding = torch.arange(T)[None, :] >= lengths[:, None]
    return rnn, x, h0, lengths, padding


def _packed(rnn: nn.GRU, x, h0, lengths):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    outputs, final = rnn(packed, h0)
    return pad_packed_sequence(outputs, batch_first=True, total_length=x.size(1))[0], final


def _grads(rnn: nn.GRU, outputs, final, wrt, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    upstream = torch.randn(outputs.shape, generator=gen, dtype=outputs.dtype)
    upstream_final = torch.randn(final.shape, generator=gen, dtype=final.dtype)
    loss = (outputs * upstream).sum() + (final * upstream_final).sum()
    return torch.autograd.grad(loss, [*wrt, *rnn.parameters()])


@pytest.mark.parametrize(("layers", "bidirectional", "hidden"), LAYOUTS)
def test_padded_batch_equals_packed_gru(layers, bidirectional, hidden) -> None:
    """Outputs (zero at padding), final states, and the gradients of inputs, initial states
    and every weight and bias."""
    rnn, x, h0, lengths, padding = _case(layers, bidirectional, hidden)
    assert gru.supports(rnn, x)
    want_out, want_final = _packed(rnn, x, h0, lengths)
    got_out, got_final = gru.run(rnn, x, h0, padding)
    torch.testing.assert_close(got_out, want_out)
    torch.testing.assert_close(got_final, want_final)
    assert not got_out[padding].any()
    want = _grads(rnn, want_out, want_final, (x, h0))
    got = _grads(rnn, got_out, got_final, (x, h0))
    for name, a, b in zip(["x", "h0", *dict(rnn.named_parameters())], got, want, strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize(("layers", "bidirectional", "hidden"), LAYOUTS)
def test_unpadded_sequence_equals_gru(layers, bidirectional, hidden) -> None:
    """Without padding (the decoder's teacher-forced targets) it is nn.GRU on the whole batch."""
    rnn, x, h0, _, _ = _case(layers, bidirectional, hidden)
    want_out, want_final = rnn(x, h0)
    got_out, got_final = gru.run(rnn, x, h0)
    torch.testing.assert_close(got_out, want_out)
    torch.testing.assert_close(got_final, want_final)
    want = _grads(rnn, want_out, want_final, (x, h0))
    got = _grads(rnn, got_out, got_final, (x, h0))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


class _Runner(nn.Module):
    """gru.run as a module, so that torch.func.functional_call can swap the GRU's parameters."""

    def __init__(self, rnn: nn.GRU, padding) -> None:
        super().__init__()
        self.rnn, self.padding = rnn, padding

    def forward(self, inputs, initial):
        return gru.run(self.rnn, inputs, initial, self.padding)


def test_gradcheck_with_padding_both_directions() -> None:
    """Numerical gradients of the hand-written backward pass, finite differences in float64."""
    rnn, x, h0, _, padding = _case(1, True, 3)
    runner = _Runner(rnn, padding)
    names = [f"rnn.{name}" for name, _ in rnn.named_parameters()]

    def function(inputs, initial, *params):
        weights = dict(zip(names, params, strict=True))
        return torch.func.functional_call(runner, weights, (inputs, initial))

    assert torch.autograd.gradcheck(function, (x, h0, *rnn.parameters()))


def test_padded_positions_do_not_leak() -> None:
    """Whatever sits at padded positions changes no value and no gradient of the real ones."""
    rnn, x, h0, _, padding = _case(1, True, 4)
    noisy = x.detach().masked_fill(padding[..., None], 1e6).requires_grad_(True)
    clean_out, clean_final = gru.run(rnn, x, h0, padding)
    noisy_out, noisy_final = gru.run(rnn, noisy, h0, padding)
    torch.testing.assert_close(noisy_out, clean_out)
    torch.testing.assert_close(noisy_final, clean_final)
    clean = _grads(rnn, clean_out, clean_final, (x,))
    noisy_grads = _grads(rnn, noisy_out, noisy_final, (noisy,))
    for a, b in zip(noisy_grads, clean, strict=True):
        torch.testing.assert_close(a, b)
    assert not noisy_grads[0][padding].any()


def test_encoder_takes_this_path_and_matches_the_packed_one(monkeypatch) -> None:
    """The registered GRU encoder gives what its packed PyTorch path gives, in float32."""
    torch.manual_seed(0)
    encoder = RNNEncoder("gru", 8, 6, num_layers=2, bidirectional=True).eval()
    embedded = torch.randn(4, 9, 8, requires_grad=True)
    lengths = torch.tensor([9, 3, 1, 6])
    calls = []
    real_run = gru.run
    monkeypatch.setattr(gru, "run", lambda *a: calls.append(1) or real_run(*a))
    ours = encoder(embedded, lengths)
    assert calls, "the GRU encoder did not take modules/gru.py on the CPU"
    monkeypatch.setattr(gru, "supports", lambda rnn, inputs: False)
    theirs = encoder(embedded, lengths)
    torch.testing.assert_close(ours.states, theirs.states)
    torch.testing.assert_close(ours.final, theirs.final)
    (grad_ours,) = torch.autograd.grad(ours.states.sum() + ours.final.sum(), embedded)
    (grad_theirs,) = torch.autograd.grad(theirs.states.sum() + theirs.final.sum(), embedded)
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_dropout_between_layers_as_nn_gru(monkeypatch) -> None:
    """Dropout falls between layers (on each inner layer's outputs), never on the input or the
    last layer's outputs, at the GRU's rate and only when training."""
    rnn, x, h0, _, padding = _case(3, True, 4)
    rnn.dropout = 0.5
    calls = []
    real_dropout = gru.F.dropout

    def recording(values, p, training):
        calls.append((values.shape[-1], p, training))
        return real_dropout(values, p, training)

    monkeypatch.setattr(gru.F, "dropout", recording)
    rnn.eval()
    first, _ = gru.run(rnn, x, h0, padding)
    assert calls == [(8, 0.5, False)] * 2  # two inner layers' (B, T, 2H) outputs
    calls.clear()
    rnn.train()
    torch.manual_seed(3)
    dropped, _ = gru.run(rnn, x, h0, padding)
    assert calls == [(8, 0.5, True)] * 2
    assert not torch.allclose(dropped, first)


def test_encoder_without_a_graph_gives_the_same_values() -> None:
    """Decoding encodes with PyTorch's packed GRU; training with this module: same states."""
    torch.manual_seed(0)
    encoder = RNNEncoder("gru", 8, 6, num_layers=1, bidirectional=True).eval()
    embedded, lengths = torch.randn(4, 9, 8), torch.tensor([9, 3, 1, 6])
    with torch.no_grad():
        decoding = encoder(embedded, lengths)
    training = encoder(embedded, lengths)
    assert training.states.requires_grad  # built by modules/gru.py
    torch.testing.assert_close(training.states.detach(), decoding.states)
    torch.testing.assert_close(training.final.detach(), decoding.final)


def test_frozen_inputs_and_weights() -> None:
    """Inputs without gradients, or frozen weights: the rest of the gradients are still exact."""
    rnn, x, h0, lengths, padding = _case(1, True, 4)
    x = x.detach()
    rnn.weight_ih_l0.requires_grad_(False)
    want_out, want_final = _packed(rnn, x, h0, lengths)
    got_out, got_final = gru.run(rnn, x, h0, padding)
    wrt = [h0, *(p for p in rnn.parameters() if p.requires_grad)]
    upstream = torch.randn_like(want_out)
    want = torch.autograd.grad((want_out * upstream).sum() + want_final.sum(), wrt)
    got = torch.autograd.grad((got_out * upstream).sum() + got_final.sum(), wrt)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_all_padding_row_keeps_its_initial_state() -> None:
    """A row with nothing to read ends where it started, and its outputs are zero."""
    rnn, x, h0, _, _ = _case(1, True, 4)
    padding = torch.zeros(x.shape[:2], dtype=torch.bool)
    padding[1] = True
    out, final = gru.run(rnn, x, h0, padding)
    assert not out[1].any()
    torch.testing.assert_close(final[:, 1], h0[:, 1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_steps_aside_where_pytorch_must_serve() -> None:
    """LSTMs, other dtypes, autocast, no graph, tracing, empty sequences, no biases, time-major
    and int8 GRUs (another class) keep PyTorch's own module."""
    x = torch.randn(2, 3, 4)
    plain = nn.GRU(4, 5, batch_first=True)
    assert gru.supports(plain, x)
    assert not gru.supports(nn.LSTM(4, 5, batch_first=True), x)
    assert not gru.supports(nn.GRU(4, 5, batch_first=False), x)
    assert not gru.supports(nn.GRU(4, 5, batch_first=True, bias=False), x)
    assert not gru.supports(plain, x.bfloat16())
    assert not gru.supports(plain, x[:, :0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gru.supports(plain, x)
    with torch.no_grad():  # decoding: PyTorch's forward pass is the faster one
        assert not gru.supports(plain, x)
    int8 = torch.ao.quantization.quantize_dynamic(nn.Sequential(plain), {nn.GRU}, torch.qint8)
    assert not gru.supports(int8[0], x)
    seen = []

    def record(inputs):
        seen.append(gru.supports(plain, inputs))
        return inputs

    torch.jit.trace(record, (x,), check_trace=False)
    assert seen == [False]
