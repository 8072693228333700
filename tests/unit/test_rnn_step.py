"""Decoding's RNN step with the first layer's input gates from a per-token table: the values of
nn.GRU / nn.LSTM and of the decoders' own step, a table that follows the weights, and the cases
where PyTorch's module must run instead."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.assemble import build_model
from seq2seq.data.batching import make_batch
from seq2seq.model import Seq2Seq
from seq2seq.modules import rnn_step
from seq2seq.modules.decoders import LuongDecoder
from seq2seq.modules.protocols import DecoderState
from seq2seq.recipe import ModelConfig
from seq2seq.search.beam import BeamSearch
from seq2seq.training.optim import _fused
from tests.unit.test_beam_layout import SOURCES, model_for

V, E, H = 11, 6, 5


def _states(cell: type[nn.RNNBase], layers: int, rows: int) -> Any:
    h = torch.randn(layers, rows, H, dtype=torch.float64)
    return (h, torch.randn_like(h)) if cell is nn.LSTM else h


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("rest_size", [0, 4])
def test_a_step_equals_pytorchs_rnn(cell: type[nn.RNNBase], layers: int, rest_size: int) -> None:
    """Output and every layer's new state (h and c) equal the module's, with and without a rest
    of the input after the embedding."""
    torch.manual_seed(layers + rest_size)
    rnn = cell(E + rest_size, H, num_layers=layers, batch_first=True).double().eval()
    embedding = nn.Embedding(V, E).double()
    prev = torch.tensor([3, 0, 10, 3, 7])
    rest = torch.randn(5, rest_size, dtype=torch.float64) if rest_size else None
    hidden = _states(cell, layers, 5)
    with torch.no_grad():
        inputs = embedding(prev) if rest is None else torch.cat([embedding(prev), rest], -1)
        expected, expected_hidden = rnn(inputs.unsqueeze(1), hidden)
        assert rnn_step.usable(rnn, embedding)
        gates = rnn_step.token_gates(rnn, embedding, prev)
        output, new_hidden = rnn_step.step(rnn, gates, rest, hidden)
    torch.testing.assert_close(output, expected.squeeze(1), rtol=0, atol=1e-12)
    for got, want in zip(_flat(new_hidden), _flat(expected_hidden), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def _flat(hidden: Any) -> tuple[Tensor, ...]:
    return hidden if isinstance(hidden, tuple) else (hidden,)


def _model(decoder: str, cell: str, feeding: bool = False, layers: int = 1) -> Seq2Seq:
    torch.manual_seed(7)
    spec: dict[str, Any] = {"type": decoder, "hidden_size": 8, "num_layers": layers, "cell": cell}
    if decoder == "luong":
        spec["input_feeding"] = feeding
    cfg = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        encoder={"type": "gru", "hidden_size": 4},
        attention="bahdanau",
        decoder=spec,  # type: ignore[arg-type]
    )
    return build_model(cfg, V, V).eval()


def _first_state(model: Seq2Seq) -> DecoderState:
    src = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]])
    return model.encode(src, torch.tensor([4, 2]))


@pytest.mark.parametrize(
    ("decoder", "cell", "feeding", "layers"),
    [
        ("luong", "gru", False, 1),
        ("luong", "gru", True, 2),
        ("luong", "lstm", True, 1),
        ("bahdanau", "gru", False, 2),
        ("bahdanau", "lstm", False, 1),
    ],
)
def test_the_models_step_equals_the_decoders_plain_step(
    decoder: str, cell: str, feeding: bool, layers: int
) -> None:
    """Three steps of Seq2Seq.step (the table) give the log-probabilities and states of the
    decoder's step on the embedding through PyTorch's RNN."""
    model = _model(decoder, cell, feeding, layers)
    prev = torch.tensor([1, 5])
    with torch.no_grad():
        fast = plain = _first_state(model)
        for _ in range(3):
            log_probs, fast = model.step(prev, fast)
            features, plain = model.decoder.step(model.tgt_embed(prev), plain)
            expected = torch.log_softmax(model.generator(features), -1)
            torch.testing.assert_close(log_probs, expected, rtol=0, atol=1e-5)
            for got, want in zip(_flat(fast.hidden), _flat(plain.hidden), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
            prev = log_probs.argmax(-1)
    assert rnn_step._tables.peek(model.decoder.rnn) is not None  # the table did run


def test_the_table_follows_the_embedding_and_the_optimiser() -> None:
    """Made again after an in-place change of the embedding and after an optimiser step (fused
    Adam leaves the weights' versions as they were); freed when the model trains again."""
    model = _model("luong", "gru")
    prev = torch.tensor([2, 9])

    def step_equals_plain() -> None:
        model.eval()
        with torch.no_grad():
            log_probs, _ = model.step(prev, _first_state(model))
            features, _ = model.decoder.step(model.tgt_embed(prev), _first_state(model))
            expected = torch.log_softmax(model.generator(features), -1)
        torch.testing.assert_close(log_probs, expected, rtol=0, atol=1e-5)

    step_equals_plain()
    with torch.no_grad():
        model.tgt_embed.weight[9].add_(1.0)
    step_equals_plain()
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=0.1, **_fused(params))
    model.train()
    assert rnn_step._tables.peek(model.decoder.rnn) is None
    step_equals_plain()  # made again from the same weights
    model.train()
    output = model.run(torch.tensor([[4, 5, 3]]), torch.tensor([3]), torch.tensor([[1, 9, 2]]))
    assert output.scores is not None
    output.scores.logsumexp(-1).sum().backward()
    model.eval()  # eval keeps the table made before the step: only the step's count renews it
    with torch.no_grad():
        model.step(prev, _first_state(model))
    held = rnn_step._tables.peek(model.decoder.rnn)
    optimizer.step()
    step_equals_plain()
    assert rnn_step._tables.peek(model.decoder.rnn) is not held
    step_equals_plain()


def test_pytorchs_rnn_runs_where_the_table_would_not_be_exact_or_possible() -> None:
    """No table with a graph to build, in training with dropout between layers, for an LSTM
    with projections, a bidirectional RNN, or an embedding of another dtype."""
    rnn = nn.GRU(E, H, num_layers=2, dropout=0.5).eval()
    embedding = nn.Embedding(V, E)
    with torch.no_grad():
        assert rnn_step.usable(rnn, embedding)
        assert not rnn_step.usable(rnn.train(), embedding)
        assert not rnn_step.usable(nn.LSTM(E, H, proj_size=2), embedding)
        assert not rnn_step.usable(nn.GRU(E, H, bidirectional=True), embedding)
        assert not rnn_step.usable(nn.GRU(E, H), nn.Embedding(V, E).double())
        assert not rnn_step.usable(nn.GRU(E, H, bias=False), embedding)
        assert not rnn_step.usable(rnn.eval(), nn.Embedding(V, E, max_norm=1.0))
        handle = embedding.register_forward_hook(lambda module, args, out: out * 2)
        assert not rnn_step.usable(rnn.eval(), embedding)  # the table would skip the hook
        handle.remove()
        assert rnn_step.usable(rnn, embedding)
    assert not rnn_step.usable(rnn.eval(), embedding)  # grad enabled


def test_a_missing_rest_of_the_input_is_an_error() -> None:
    """An RNN whose input is wider than the embedding needs the rest, as nn.GRU would."""
    rnn, embedding = nn.GRU(E + 3, H).eval(), nn.Embedding(V, E)
    with torch.no_grad():
        gates = rnn_step.token_gates(rnn, embedding, torch.tensor([1, 2]))
        with pytest.raises(ValueError, match="rest"):
            rnn_step.step(rnn, gates, None, torch.zeros(1, 2, H))


@pytest.mark.parametrize("name", ["luong-bahdanau-feed", "luong-general-lstm", "bahdanau-concat"])
def test_beam_search_finds_the_same_n_best_with_and_without_the_table(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beam search's n-best lists (tokens and scores) over shared-memory states are those of
    PyTorch's RNN."""
    model = model_for(name)
    search = BeamSearch(beam_size=3, n_best=3, max_length=7)
    batch = make_batch(SOURCES, None, list(range(len(SOURCES))))
    with_table = search(model, batch)
    assert rnn_step._tables.peek(model.decoder.rnn) is not None
    monkeypatch.setattr(rnn_step, "usable", lambda *_: False)
    without = search(model, batch)
    for got, want in zip(with_table, without, strict=True):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)


class _OwnStep(LuongDecoder):
    """A plugin's decoder with its own two-argument step."""

    calls = 0

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:  # type: ignore[override]
        _OwnStep.calls += 1
        return super().step(embedded, state)


def test_a_subclass_with_its_own_step_gets_the_embedding() -> None:
    """step_tokens calls an overriding step as step(embedded, state), without the table."""
    model = _model("luong", "gru")
    own = _OwnStep(8, 8, None, "gru", 8, 1, 0.0, False, "zeros").eval()
    model.decoder = own
    with torch.no_grad():
        model.step(torch.tensor([1, 5]), _first_state(model))
    assert _OwnStep.calls == 1
    assert rnn_step._tables.peek(own.rnn) is None


def test_the_table_path_ends_in_the_models_own_scores() -> None:
    """A Seq2Seq subclass that changes `_scores` is heard in decoding steps with the table too."""

    class Tempered(Seq2Seq):
        def _scores(self, features: Tensor, *rest: Any) -> Tensor:
            return super()._scores(features, *rest) / 1e6

    model = _model("luong", "gru")
    model.__class__ = Tempered
    with torch.no_grad():
        log_probs, _ = model.step(torch.tensor([1, 5]), _first_state(model))
    assert rnn_step._tables.peek(model.decoder.rnn) is not None  # the table path ran
    torch.testing.assert_close(log_probs.exp(), torch.full((2, V), 1 / V), rtol=0, atol=1e-5)
