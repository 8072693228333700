"""top_k through block maxima against torch.topk."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.search.top import BLOCK, top_1, top_k


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    columns=st.integers(1, 60 * BLOCK + 7),  # the block path from 4k blocks on
    k=st.integers(1, 10),
    banned=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**31 - 1),
)
def test_top_k_equals_torch_topk(rows: int, columns: int, k: int, banned: float, seed: int) -> None:
    """Same values and, for distinct finite ones, the same indices, largest first; rows with
    −∞ entries (banned pieces, dead beams) and a last partial block included."""
    k = min(k, columns)
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(rows, columns, generator=generator)
    values[torch.rand(rows, columns, generator=generator) < banned] = -torch.inf
    top, index = top_k(values, k)
    expected = values.topk(k, dim=-1)
    assert torch.equal(top, expected.values)
    assert torch.equal(values.gather(1, index), top)  # the indices point at those values
    finite = torch.isfinite(top)
    assert torch.equal(index[finite], expected.indices[finite])


def test_the_block_path_is_taken_and_a_maximum_in_the_last_block_is_found() -> None:
    """With many blocks the answer comes through the block maxima, including the columns past
    the last whole block."""
    values = torch.full((2, 40 * BLOCK + 3), -5.0)
    values[0, -1] = 3.0  # in the partial block
    values[1, 7 * BLOCK + 1] = 2.0
    values[1, 39 * BLOCK] = 1.0
    maxima: list[tuple[int, ...]] = []
    amax = torch.Tensor.amax
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            torch.Tensor, "amax", lambda t, *a, **k: maxima.append(t.shape) or amax(t, *a, **k)
        )
        top, index = top_k(values, 2)
    assert maxima == [(2, 40, BLOCK)]  # the block maxima were taken
    assert top[:, 0].tolist() == [3.0, 2.0]
    assert index[:, 0].tolist() == [40 * BLOCK + 2, 7 * BLOCK + 1]
    assert top[1, 1] == 1.0 and index[1, 1] == 39 * BLOCK


@pytest.mark.parametrize("layout", ["transposed", "few blocks"])
def test_other_inputs_take_torch_topk(layout: str) -> None:
    """A column-strided tensor or a narrow row gives torch.topk's answer."""
    values = torch.randn(20 * BLOCK, 3).t() if layout == "transposed" else torch.randn(4, 9)
    top, index = top_k(values, 2)
    assert torch.equal(top, values.topk(2).values) and torch.equal(index, values.topk(2).indices)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.integers(1, 5),
    columns=st.integers(1, 12 * BLOCK + 7),  # the block path from 4 blocks on
    levels=st.integers(1, 6),
    banned=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**31 - 1),
)
def test_top_1_is_max_even_on_ties(
    rows: int, columns: int, levels: int, banned: float, seed: int
) -> None:
    """Greedy's pick equals `max(dim=-1)` in value and index, ties included (few distinct
    values make many), with −∞ entries and a last partial block."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, levels, (rows, columns), generator=generator).float()
    values[torch.rand(rows, columns, generator=generator) < banned] = -torch.inf
    best, index = top_1(values)
    expected = values.max(dim=-1)
    assert torch.equal(best, expected.values) and torch.equal(index, expected.indices)


def test_top_1_takes_the_block_path_and_finds_the_first_maximum_in_the_partial_block() -> None:
    """A tie between the partial block's last column and nothing before it; and NaN, which
    max(dim) returns."""
    values = torch.full((3, 8 * BLOCK + 5), -1.0)
    values[0, -1] = 4.0  # the last column, in the partial block
    values[1, 3 * BLOCK + 9] = 2.0  # a tie: the first one wins
    values[1, 6 * BLOCK] = 2.0
    values[2, 5 * BLOCK + 1] = float("nan")
    maxima: list[tuple[int, ...]] = []
    amax = torch.Tensor.amax
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            torch.Tensor, "amax", lambda t, *a, **k: maxima.append(t.shape) or amax(t, *a, **k)
        )
        best, index = top_1(values)
    assert maxima[0] == (3, 8, BLOCK)  # the block maxima were taken
    assert index.tolist() == [8 * BLOCK + 4, 3 * BLOCK + 9, 5 * BLOCK + 1]
    assert best[:2].tolist() == [4.0, 2.0] and best[2].isnan()
