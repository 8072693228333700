"""`seq2seq translate`: raw text in, one translation per line out, order kept."""

from __future__ import annotations

import sys

import click

from seq2seq.cli.options import build_search, output_file, search_spec


@click.command("translate")
@click.argument("run_dir", type=click.Path())
@click.option("-i", "--input", "input_path", type=click.Path(), help="Input file (default stdin).")
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(dir_okay=False),
    help="Output file (default stdout); written only when complete.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--max-length", type=click.IntRange(min=1), help="Longest output in pieces.")
@click.option("--search", "search", help="Search name (default: the recipe's).")
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True
)
def translate_command(
    run_dir: str,
    input_path: str | None,
    output_path: str | None,
    batch_size: int,
    max_length: int | None,
    search: str | None,
    device: str,
    checkpoint: str,
) -> None:
    """Translate text with the model in RUN_DIR (the --out dir of `seq2seq train`)."""
    from pathlib import Path

    from seq2seq.bundle import load_run
    from seq2seq.data.dataset import decode_lines, iter_text_lines
    from seq2seq.inference import translate_stream
    from seq2seq.training.run import pick_device

    loaded = load_run(run_dir, checkpoint, str(pick_device(device)))
    decoder = build_search(search_spec(loaded.recipe.search, search, max_length))
    if input_path is None or input_path == "-":
        lines = decode_lines(sys.stdin.buffer, "stdin")
    else:
        lines = iter_text_lines(Path(input_path), "--input")
    with output_file(output_path) as out:
        for text in translate_stream(loaded, decoder, lines, batch_size):
            out.write(text + "\n")
            if out is sys.stdout:
                out.flush()


COMMANDS = [translate_command]
