"""`seq2seq plot`: the training curves of one or several runs in one PNG."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), metavar="RUN_DIR...")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False),
    help="PNG to write (default: RUN_DIR/curves.png for one run, ./curves.png for several).",
)
def plot_command(run_dirs: tuple[str, ...], out: str | None) -> None:
    """Draw loss, validation metrics, learning rate and tokens/s of the runs, overlaid."""
    from seq2seq.plots.curves import CURVES_FILE, plot_runs

    if out is None:
        out = str(Path(run_dirs[0]) / CURVES_FILE) if len(run_dirs) == 1 else CURVES_FILE
    written = plot_runs(run_dirs, out)
    click.echo(f"wrote {written}")


COMMANDS = [plot_command]
