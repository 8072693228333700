"""The plugin's own tests: seq2seq's encoder contract, through the installed entry point."""

from __future__ import annotations

import pytest

from seq2seq import registry
from seq2seq.testing import check_encoder


def test_registered_through_the_entry_point() -> None:
    """The installed distribution provides the name 'conv'."""
    assert registry.names("encoder")["conv"] == "seq2seq-conv-encoder 0.1.0"


@pytest.mark.parametrize("num_layers", [1, 3])
def test_encoder_contract(num_layers: int) -> None:
    """Shapes, masking, padding invariance and gradients, as seq2seq's own encoders."""
    check_encoder({"type": "conv", "hidden_size": 8, "num_layers": num_layers, "dropout": 0.0})


def test_even_kernel_is_a_recipe_error() -> None:
    """A bad argument becomes a recipe error with its key path."""
    with pytest.raises(registry.RecipeError, match="model.encoder: kernel_size must be odd"):
        registry.build(
            "encoder", {"type": "conv", "kernel_size": 4}, where="model.encoder", input_size=8
        )
