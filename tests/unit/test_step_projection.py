"""The decoding projection from a cached copy of Wᵀ: the generator's values, and a copy that
follows the weight through optimiser steps, loaded checkpoints and replaced tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.modules.output import project

CACHE = "_transposed_weight"


def _copy(generator: nn.Linear) -> torch.Tensor | None:
    cached = generator.__dict__.get(CACHE)
    return None if cached is None else cached[1]


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
        copy = _copy(generator)
        second = project(generator, features)
    assert first.shape == expected.shape == (*shape[:-1], 300)
    assert torch.allclose(first, expected, atol=1e-5) and torch.equal(first, second)
    assert copy is not None and copy.is_contiguous() and torch.equal(copy, generator.weight.t())
    assert _copy(generator) is copy


def _changes(generator: nn.Linear) -> dict[str, object]:
    """Ways a weight changes between two decodes: each must renew the copy."""

    def adam_step() -> None:
        optimizer = torch.optim.Adam(generator.parameters(), lr=0.1, fused=True)
        generator(torch.randn(4, 16)).square().sum().backward()
        optimizer.step()

    def load() -> None:
        other = nn.Linear(16, 300)
        generator.load_state_dict(other.state_dict())

    def replace() -> None:
        generator.weight = nn.Parameter(torch.randn(300, 16))

    def in_place() -> None:
        with torch.no_grad():
            generator.weight.mul_(2.0)

    return {"adam": adam_step, "load_state_dict": load, "replace": replace, "in_place": in_place}


@pytest.mark.parametrize("change", ["adam", "load_state_dict", "replace", "in_place"])
def test_a_changed_weight_gets_a_new_copy(change: str) -> None:
    """Decoding after training steps (validation), a loaded checkpoint or a swapped tensor uses
    the weight as it is now, not the copy of the weight it was."""
    generator = nn.Linear(16, 300)
    features = torch.randn(6, 16)
    with torch.no_grad():
        project(generator, features)
    _changes(generator)[change]()  # type: ignore[operator]
    with torch.no_grad():
        got = project(generator, features)
        expected = generator(features)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(_copy(generator), generator.weight.t())  # type: ignore[arg-type]


def test_with_a_graph_the_generator_itself_runs() -> None:
    """Training needs the weight's gradient: no copy is made, and gradients reach the weight."""
    generator = nn.Linear(16, 300)
    project(generator, torch.randn(3, 16)).sum().backward()
    assert _copy(generator) is None
    assert generator.weight.grad is not None


def test_other_generators_and_inference_weights_are_called() -> None:
    """A subclass (an int8 export's linear, a plugin's) or a weight made in inference mode, which
    has no version to follow, is called as it is."""

    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2.0

    scaled = Scaled(16, 300)
    features = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(project(scaled, features), scaled(features))
    assert _copy(scaled) is None
    with torch.inference_mode():
        frozen = nn.Linear(16, 300)
        assert torch.equal(project(frozen, features), frozen(features))
    assert _copy(frozen) is None
