"""`seq2seq export`: a run's model as a traced (optionally int8) bundle for CPU deployment."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Export dir to create."
)
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Dynamic int8 quantization of the GRU/LSTM and linear layers.",
)
@click.option(
    "--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True
)
def export_command(run_dir: str, out: str, quantize: str | None, checkpoint: str) -> None:
    """Export the model in RUN_DIR to --out (TorchScript); translate and serve accept --out."""
    from seq2seq.export.write import export_run

    path = export_run(run_dir, out, "int8" if quantize == "int8" else None, checkpoint)
    click.echo(f"exported {run_dir} to {path}" + (" (int8)" if quantize else ""))


COMMANDS = [export_command]
