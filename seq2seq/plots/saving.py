"""Writing a matplotlib figure to a PNG atomically: a temporary file, then a rename."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure

from seq2seq.errors import PlotError

DPI = 100


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write `figure` to `path` as a PNG; a reader never sees a half-written file."""
    target = Path(path)
    if target.exists() and not target.is_file():
        return _write_in_place(figure, target)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        figure.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, target)
    except OSError as exc:
        raise PlotError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _write_in_place(figure: Figure, target: Path) -> Path:
    """A device or pipe (say /dev/null) is written to, not renamed over; the PNG is made in
    memory first because a pipe cannot seek."""
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=DPI)
    try:
        target.write_bytes(image.getvalue())
    except OSError as exc:
        raise PlotError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
