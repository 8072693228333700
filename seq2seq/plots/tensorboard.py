"""Optional TensorBoard logging (`train.tensorboard: true`): scalars and attention images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seq2seq.errors import Seq2SeqError

TENSORBOARD_DIR = "tensorboard"
MISSING = (
    "train.tensorboard is true but the tensorboard package is not installed; "
    "pip install 'seq2seq[tensorboard]' (or set train.tensorboard: false)"
)


def summary_writer_class() -> Any:
    """torch's SummaryWriter; a clear error when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise Seq2SeqError(MISSING) from exc
    return SummaryWriter


def figure_pixels(figure: Figure) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a figure, rendered with Agg."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


class TensorBoardLog:
    """Writes the run's scalars and attention images under RUN_DIR/tensorboard."""

    def __init__(self, run_dir: str | Path, start_step: int = 0) -> None:
        writer = summary_writer_class()
        # A resumed run logs again from its checkpoint: drop events the first attempt wrote
        # past it, as metrics.jsonl readers do.
        purge = start_step + 1 if start_step > 0 else None
        self.writer = writer(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def scalars(self, record: dict[str, Any]) -> None:
        """Every number of a metrics record, tagged `split/name`."""
        step, split = int(record["step"]), str(record["split"])
        for key, value in record.items():
            if key not in ("step", "split") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"{split}/{key}", float(value), step)

    def figures(self, tag: str, figures: Sequence[Figure], step: int) -> None:
        """Figures as images `tag/1`, `tag/2`, …"""
        for number, figure in enumerate(figures, 1):
            pixels = figure_pixels(figure)
            self.writer.add_image(f"{tag}/{number}", pixels, step, dataformats="HWC")

    def flush(self) -> None:
        """Push pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
