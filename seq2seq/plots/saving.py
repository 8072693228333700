"""Writing a matplotlib figure to a PNG atomically: a temporary file, then a rename."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from seq2seq.errors import PlotError

DPI = 100


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write `figure` to `path` as a PNG; a reader never sees a half-written file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        figure.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, target)
    except OSError as exc:
        raise PlotError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
