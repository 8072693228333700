"""Attention maps: target pieces down, source pieces across, one panel per head."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch import Tensor

from seq2seq.plots.saving import save_png

MAX_PIECES = 60  # longer sides are cut (and the title says so): labels stay legible
CELL = 0.28  # inches per matrix cell
MAX_WIDTH = 24.0  # inches: wider grids of heads wrap onto more rows


def attention_figure(
    source: Sequence[str],
    target: Sequence[str],
    weights: Tensor,
    heads: Tensor | None = None,
    title: str = "",
) -> Figure:
    """A figure of (T, S) `weights`, or one panel per head of (n, T, S) `heads` when given.

    Rows are `target` pieces, columns `source` pieces; either side beyond MAX_PIECES is cut.
    """
    maps = heads if heads is not None else weights[None]
    T, S = min(maps.size(1), len(target), MAX_PIECES), min(maps.size(2), len(source), MAX_PIECES)
    cut = maps.size(1) > T or maps.size(2) > S
    panel_w, panel_h = 1.2 + CELL * S, 1.0 + CELL * T + _label_room(source[:S])
    panel_w += _label_room(target[:T])
    columns = max(1, min(len(maps), int(MAX_WIDTH // panel_w)))
    rows = math.ceil(len(maps) / columns)
    figure = Figure(
        figsize=(max(panel_w * columns + 1.0, 4.0), max(panel_h * rows + 0.6, 3.0)),
        layout="constrained",
    )
    grid = figure.subplots(rows, columns, squeeze=False)
    image = None
    for index, axes in enumerate(grid.flat):
        if index >= len(maps):
            axes.set_visible(False)
            continue
        image = axes.imshow(
            maps[index, :T, :S].float().numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal"
        )
        axes.set_xticks(range(S), labels=list(source[:S]), rotation=90, fontsize=9)
        axes.set_yticks(range(T), labels=list(target[:T]), fontsize=9)
        axes.set_xlabel("source")
        axes.set_ylabel("target")
        if heads is not None:
            axes.set_title(f"head {index + 1}", fontsize=10)
    if image is not None:
        figure.colorbar(image, ax=grid.ravel().tolist(), shrink=0.6, label="weight")
    note = f"  (first {MAX_PIECES} pieces shown)" if cut else ""
    figure.suptitle(f"{title}{note}", fontsize=10)
    return figure


def _label_room(labels: Sequence[str]) -> float:
    """Inches for the longest tick label."""
    return 0.09 * max((len(label) for label in labels), default=1)


def figure_name(line: int) -> str:
    """The PNG name of input line `line` (1-based): 00001.png."""
    return f"{line:05d}.png"


def write_attention(
    directory: str | Path,
    line: int,
    source: Sequence[str],
    target: Sequence[str],
    weights: Tensor,
    heads: Tensor | None = None,
) -> Path:
    """Draw one sentence's attention into DIRECTORY/<line>.png."""
    figure = attention_figure(source, target, weights, heads, f"input line {line}")
    return save_png(figure, Path(directory) / figure_name(line))


def write_translation_attention(directory: str | Path, line: int, translation: Any) -> Path | None:
    """Draw the best hypothesis of an `inference.Translation`; None when there is nothing to
    draw (a blank line, or a search that keeps no attention)."""
    if not translation.hypotheses or translation.hypotheses[0].attention is None:
        return None
    best = translation.hypotheses[0]
    target = [*translation.pieces[0], "</s>"]
    return write_attention(
        directory, line, translation.source_pieces, target, best.attention, best.head_attention
    )
