"""Training curves of one or several runs: loss, validation metrics, learning rate, tokens/s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from seq2seq.plots.history import History, read_history
from seq2seq.plots.saving import save_png

CURVES_FILE = "curves.png"
METRIC_STYLES = ("-", "--", ":", "-.")


def curves_figure(histories: Sequence[History]) -> Figure:
    """Four panels with every run overlaid, one colour per run, and a legend naming each line."""
    figure = Figure(figsize=(12, 8), layout="constrained")
    loss, metrics, lr, speed = figure.subplots(2, 2, sharex=True).flat
    several = len(histories) > 1
    for index, history in enumerate(histories):
        colour = f"C{index % 10}"
        prefix = f"{history.name} · " if several else ""
        _line(loss, history.series("train", "loss"), colour, f"{prefix}train", "-")
        _line(loss, history.series("valid", "loss"), colour, f"{prefix}valid", "--", "o")
        for number, metric in enumerate(history.valid_metrics()):
            style = METRIC_STYLES[number % len(METRIC_STYLES)]
            _line(metrics, history.series("valid", metric), colour, f"{prefix}{metric}", style, "o")
        _line(lr, history.series("train", "lr"), colour, history.name, "-")
        _line(speed, history.series("train", "tok_per_s"), colour, history.name, "-")
    _finish(loss, "loss (per target token)", "cross-entropy")
    _finish(metrics, "validation metrics", "score")
    _finish(lr, "learning rate", "lr")
    _finish(speed, "training speed", "target tokens / s")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if speed.lines:
        speed.set_ylim(bottom=0)  # the swings of a busy machine should not look like a trend
    for axes in (lr, speed):
        axes.set_xlabel("step")
    names = ", ".join(h.name for h in histories)
    last = max(h.last_step for h in histories)
    figure.suptitle(f"{names}  (step {last})")
    return figure


def _line(
    axes: Axes,
    series: tuple[list[int], list[float]],
    colour: str,
    label: str,
    style: str,
    marker: str | None = None,
) -> None:
    steps, values = series
    if steps:
        axes.plot(
            steps, values, linestyle=style, marker=marker, markersize=3, color=colour, label=label
        )


def _finish(axes: Axes, title: str, ylabel: str) -> None:
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize="small")
    else:
        axes.text(
            0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=axes.transAxes
        )


def run_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """Legend names: each dir's name, or the path as given where two names would clash."""
    names = [Path(d).name or str(d) for d in run_dirs]
    return [str(d) if names.count(n) > 1 else n for d, n in zip(run_dirs, names, strict=True)]


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Draw the curves of `run_dirs` overlaid into the PNG `out`."""
    histories = [read_history(d, n) for d, n in zip(run_dirs, run_names(run_dirs), strict=True)]
    return save_png(curves_figure(histories), out)


def write_curves(run_dir: str | Path) -> Path:
    """(Re)draw RUN_DIR/curves.png from the run's metrics.jsonl."""
    return plot_runs([run_dir], Path(run_dir) / CURVES_FILE)
