"""The decoding projection from a cached copy of Wᵀ: the generator's values, and a copy that
follows the weight through optimiser steps, loaded checkpoints, tying and replaced tensors."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from seq2seq.modules import projection
from seq2seq.modules.projection import cache_projection, project
from seq2seq.training.optim import _fused
from tests.conftest import tiny_model


def _copy(generator: nn.Module) -> torch.Tensor | None:
    return projection._copies.peek(generator)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 16), (7, 16), (5, 1, 16), (2, 3, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_the_generator_and_keeps_its_copy(
    bias: bool, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    """(N, H) and (B, T, H) features, with and without bias: the generator's logits, from one
    copy made at the first call and used again at the next."""
    generator = nn.Linear(16, 300, bias=bias).to(dtype)
    features = torch.randn(shape, dtype=dtype)
    with torch.no_grad():
        expected = generator(features)
        first = project(generator, features)
        made = _copy(generator)
        second = project(generator, features)
    assert first.shape == expected.shape == (*shape[:-1], 300)
    assert torch.allclose(first, expected, atol=1e-5) and torch.equal(first, second)
    assert made is not None and made.is_contiguous() and torch.equal(made, generator.weight.t())
    assert _copy(generator) is made


def _adam_step(generator: nn.Linear) -> None:
    params = list(generator.parameters())
    optimizer = torch.optim.Adam(params, lr=0.1, **_fused(params))  # fused where torch has it
    generator(torch.randn(4, 16)).square().sum().backward()
    optimizer.step()


def _load(generator: nn.Linear) -> None:
    generator.load_state_dict(nn.Linear(16, 300).state_dict())


def _replace(generator: nn.Linear) -> None:
    generator.weight = nn.Parameter(torch.randn(300, 16))


def _new_data(generator: nn.Linear) -> None:
    generator.weight.data = torch.randn(300, 16)


def _in_place(generator: nn.Linear) -> None:
    with torch.no_grad():
        generator.weight.mul_(2.0)


CHANGES: dict[str, Callable[[nn.Linear], None]] = {
    "adam": _adam_step,
    "load_state_dict": _load,
    "replace": _replace,
    "new_data": _new_data,
    "in_place": _in_place,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_weight_gets_a_new_copy(change: str) -> None:
    """Decoding after training steps (validation), a loaded checkpoint or a swapped tensor uses
    the weight as it is now, not the copy of the weight it was."""
    generator = nn.Linear(16, 300)
    features = torch.randn(6, 16)
    with torch.no_grad():
        project(generator, features)
    CHANGES[change](generator)
    with torch.no_grad():
        got = project(generator, features)
        expected = generator(features)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(_copy(generator), generator.weight.t())  # type: ignore[arg-type]


def test_a_tied_output_follows_the_target_embeddings() -> None:
    """With the output tied to the target embeddings, changing the embeddings changes the
    model's step through the copy too."""
    model = tiny_model(tie=True)
    src, lengths, prev = torch.tensor([[5, 6, 3]]), torch.tensor([3]), torch.tensor([2])
    with torch.no_grad():
        model.step(prev, model.encode(src, lengths))
        model.tgt_embed.weight.mul_(3.0)
        got, _ = model.step(prev, model.encode(src, lengths))
        features, _ = model.decoder.step(model.tgt_embed(prev), model.encode(src, lengths))
        expected = torch.log_softmax(model.generator(features), -1)
    assert _copy(model.generator) is not None  # the step went through the copy
    assert torch.allclose(got, expected, atol=1e-5)


def test_with_a_graph_the_generator_itself_runs() -> None:
    """Training needs the weight's gradient: no copy is made, and gradients reach the weight."""
    generator = nn.Linear(16, 300)
    project(generator, torch.randn(3, 16)).sum().backward()
    assert _copy(generator) is None
    assert generator.weight.grad is not None


def test_other_generators_dtypes_autocast_and_inference_weights_are_called() -> None:
    """A subclass (an int8 export's linear, a plugin's), features of another dtype, autocast
    and a weight made in inference mode (no version to follow) go to the module itself."""

    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2.0

    scaled, plain = Scaled(16, 300), nn.Linear(16, 300)
    features = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(project(scaled, features), scaled(features))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert project(plain, features).dtype == torch.bfloat16
        with pytest.raises(RuntimeError):  # the module's own complaint about the dtypes
            project(plain, features.double())
    assert _copy(scaled) is None and _copy(plain) is None
    with torch.inference_mode():
        frozen = nn.Linear(16, 300)
        assert torch.equal(project(frozen, features), frozen(features))
    assert _copy(frozen) is None


def test_cache_projection_makes_the_copy_and_copies_of_the_model_do_not_carry_it() -> None:
    """Made before forking decoding workers (so that they share it); deepcopies and pickles of
    the model start without it."""
    model = tiny_model()
    cache_projection(model)
    made = _copy(model.generator)
    assert made is not None and torch.equal(made, model.generator.weight.t())
    assert _copy(copy.deepcopy(model).generator) is None


def test_training_mode_frees_the_copy() -> None:
    """Back in training (after a validation decode) the copy is dropped: it would be stale after
    the next update and only hold memory; eval mode keeps it."""
    model = tiny_model()
    src, lengths, prev = torch.tensor([[5, 6, 3]]), torch.tensor([3]), torch.tensor([2])
    with torch.no_grad():
        model.step(prev, model.encode(src, lengths))
    model.eval()
    assert _copy(model.generator) is not None
    model.train()
    assert _copy(model.generator) is None
