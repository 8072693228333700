"""Seq2Seq assembly: shapes, the parallel teacher-forcing path, tying, scheduled sampling."""

from __future__ import annotations

import pytest
import torch

from seq2seq.assemble import build_model, count_parameters
from seq2seq.errors import RecipeError
from seq2seq.recipe import ModelConfig
from seq2seq.training.loss import sequence_loss


def _config(**changes: object) -> ModelConfig:
    base = {
        "embedding_dim": 8,
        "embedding_dropout": 0.0,
        "encoder": {"type": "gru", "hidden_size": 6},
        "attention": "bahdanau",
        "decoder": {"type": "luong", "hidden_size": 8, "dropout": 0.0, "input_feeding": False},
    }
    base.update(changes)
    return ModelConfig(**base)  # type: ignore[arg-type]


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 3], [8, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    tgt_in = torch.tensor([[2, 9, 10], [2, 11, 0]])
    tgt_out = torch.tensor([[9, 10, 3], [11, 3, 0]])
    return src, lengths, tgt_in, tgt_out


def test_forward_shapes_and_step_log_probs() -> None:
    """forward gives (B, T, V) logits; step gives normalised (B, V) log-probabilities."""
    model = build_model(_config(), 20, 30).eval()
    src, lengths, tgt_in, _ = _batch()
    assert model(src, lengths, tgt_in).shape == (2, 3, 30)
    log_probs, _ = model.step(tgt_in[:, 0], model.encode(src, lengths))
    assert log_probs.shape == (2, 30)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("scale", [None, 0.1])
def test_initialisation_bounds(scale: float | None) -> None:
    """init_scale s puts every parameter in ±s (biases too); by default matrices are within
    ±1/√fan-in and biases zero; the embeddings' pad rows are zero either way."""
    torch.manual_seed(0)
    model = build_model(_config(init_scale=scale), 20, 30)
    for name, param in model.named_parameters():
        if scale is not None:
            assert param.abs().max() <= scale, name
            assert param.abs().max() > scale / 2, name  # spread over the range, not shrunk
        elif param.dim() == 1:
            assert torch.count_nonzero(param) == 0, name
        elif "embed" not in name:
            assert param.abs().max() <= param.size(-1) ** -0.5, name
    for embed in (model.src_embed, model.tgt_embed):
        assert torch.count_nonzero(embed.weight[0]) == 0


def test_a_model_built_for_loading_skips_the_recipe_initialisation() -> None:
    """init_parameters=False (weights are loaded next) leaves PyTorch's own initialisation: the
    embeddings keep their N(0, 1) values instead of being drawn again in ±init_scale."""
    torch.manual_seed(0)
    model = build_model(_config(init_scale=0.1), 20, 30, init_parameters=False)
    assert model.src_embed.weight.abs().max() > 1.0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_parallel_path_matches_step_path(cell: str) -> None:
    """Without input feeding the whole target runs in one RNN call; the loss is the same."""
    model = build_model(
        _config(
            decoder={
                "type": "luong",
                "cell": cell,
                "hidden_size": 8,
                "dropout": 0.0,
                "input_feeding": False,
                "num_layers": 2,
            }
        ),
        20,
        30,
    ).eval()
    src, lengths, tgt_in, tgt_out = _batch()
    parallel = sequence_loss(model(src, lengths, tgt_in), tgt_out)[0]
    model.decoder.forward_sequence = lambda *args: None  # force the step-by-step path
    stepped = sequence_loss(model(src, lengths, tgt_in), tgt_out)[0]
    assert torch.allclose(parallel, stepped, atol=1e-5)


def test_padding_does_not_change_loss() -> None:
    """A sentence scores the same alone and padded inside a batch."""
    model = build_model(_config(), 20, 30).eval()
    src, lengths, tgt_in, _ = _batch()
    batch_logits = model(src, lengths, tgt_in)
    alone = model(src[1:, :2], lengths[1:], tgt_in[1:, :2])
    assert torch.allclose(batch_logits[1, :2], alone[0], atol=1e-5)


def test_scheduled_sampling_feeds_model_guesses() -> None:
    """teacher_forcing 0 feeds the model's own argmax: the output differs from full forcing."""
    model = build_model(_config(), 20, 30).eval()
    src, lengths, tgt_in, _ = _batch()
    forced = model(src, lengths, tgt_in, teacher_forcing=1.0)
    free = model(src, lengths, tgt_in, teacher_forcing=0.0)
    assert torch.allclose(forced[:, 0], free[:, 0])  # first step sees <s> either way
    assert not torch.allclose(forced[:, 1:], free[:, 1:])


def test_tie_output_shares_the_matrix() -> None:
    """tie_output makes the output projection the target embedding matrix."""
    tied = build_model(_config(tie_output=True), 20, 30)
    untied = build_model(_config(), 20, 30)
    assert tied.generator.weight is tied.tgt_embed.weight
    assert count_parameters(untied) - count_parameters(tied) == 30 * 8


def test_tie_output_size_mismatch_is_a_recipe_error() -> None:
    """The decoder feature size must equal the embedding size to tie."""
    cfg = _config(tie_output=True, embedding_dim=6)
    with pytest.raises(RecipeError, match="model.tie_output"):
        build_model(cfg, 20, 30)


def test_share_embeddings() -> None:
    """One matrix for both sides when the vocabulary is joint; an error otherwise."""
    shared = build_model(_config(share_embeddings=True), 30, 30)
    assert shared.src_embed is shared.tgt_embed
    with pytest.raises(RecipeError, match="share_embeddings"):
        build_model(_config(share_embeddings=True), 20, 30)


def test_pad_embedding_is_zero_and_gets_no_gradient() -> None:
    """The padding row stays zero."""
    model = build_model(_config(), 20, 30)
    src, lengths, tgt_in, tgt_out = _batch()
    sequence_loss(model(src, lengths, tgt_in), tgt_out)[0].backward()
    assert torch.all(model.src_embed.weight[0] == 0)
    assert torch.all(model.src_embed.weight.grad[0] == 0)


def test_attention_free_model() -> None:
    """attention: null builds and trains a plain encoder-decoder."""
    model = build_model(_config(attention=None), 20, 30)
    src, lengths, tgt_in, tgt_out = _batch()
    loss = sequence_loss(model(src, lengths, tgt_in), tgt_out)[0]
    loss.backward()
    assert model.decoder.attention is None


def test_copy_gives_a_distribution_that_can_copy() -> None:
    """Pointer-generator scores are log-probabilities; a token seen only in the source gains
    probability when the switch favours copying."""
    model = build_model(_config(copy=True, share_embeddings=True), 30, 30).eval()
    src, lengths, tgt_in, _ = _batch()
    scores = model(src, lengths, tgt_in)
    assert torch.allclose(scores.exp().sum(-1), torch.ones(2, 3), atol=1e-4)
    log_probs, _ = model.step(tgt_in[:, 0], model.encode(src, lengths))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2), atol=1e-4)
    with torch.no_grad():
        model.copy.switch.bias.fill_(-20.0)  # p_gen ≈ 0: pure copying
    with torch.no_grad():
        copied, _ = model.step(tgt_in[:, 0], model.encode(src, lengths))
    assert float(copied[0, [5, 6, 7, 3]].exp().sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(copied[1, [8, 3]].exp().sum()) == pytest.approx(1.0, abs=1e-4)


def test_copy_needs_attention() -> None:
    """Copying points with the attention weights."""
    with pytest.raises(RecipeError, match="model.copy"):
        build_model(_config(copy=True, attention=None), 30, 30)


def test_coverage_loss_counts_repeated_attention() -> None:
    """Σ_s min(a_t, c_t) is zero at the first step and positive once attention repeats."""
    model = build_model(_config(attention={"type": "bahdanau", "coverage": True}), 20, 30)
    src, lengths, tgt_in, _ = _batch()
    out = model.run(src, lengths, tgt_in, with_coverage=True)
    assert out.coverage_loss.shape == (2, 3)
    assert torch.all(out.coverage_loss[:, 0] == 0)
    assert torch.all(out.coverage_loss[:, 1:] > 0)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_step_matches_run(decoder: str) -> None:
    """Decoding step by step scores the gold target as the teacher-forced pass does."""
    spec = {"type": decoder, "hidden_size": 8, "dropout": 0.0}
    model = build_model(_config(decoder=spec), 20, 30).eval()
    src, lengths, tgt_in, _ = _batch()
    logits = model(src, lengths, tgt_in)
    state = model.encode(src, lengths)
    for t in range(tgt_in.size(1)):
        log_probs, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5)


def test_freeze_stops_training_of_named_parts() -> None:
    """Frozen parts have no trainable parameters and get no gradient."""
    model = build_model(_config(freeze=["src_embed", "encoder"]), 20, 30)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not model.src_embed.weight.requires_grad
    assert model.tgt_embed.weight.requires_grad
    src, lengths, tgt_in, tgt_out = _batch()
    sequence_loss(model(src, lengths, tgt_in), tgt_out)[0].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
