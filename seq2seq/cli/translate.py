"""`seq2seq translate`: raw text in, one translation per line out, order kept."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

import click

from seq2seq.cli.options import (
    apply_precision,
    build_search,
    open_workers,
    output_file,
    precision_option,
    search_spec,
    workers_option,
    write_failed,
)


def jsonl_record(index: int, translation: Any, with_attention: bool) -> str:
    """One JSON line: the source, and each hypothesis with its scores (and attention)."""
    hypotheses = translation.records(with_attention)
    return json.dumps(
        {"index": index, "source": translation.source, "hypotheses": hypotheses}, ensure_ascii=False
    )


def _input_lines(path: Path) -> tuple[Iterator[str], int | None]:
    """The lines of --input and their count; a named pipe or a device (`-i <(zcat f.gz)`) can
    be read only once, so it is streamed without a count."""
    from seq2seq.data.dataset import iter_text_lines
    from seq2seq.errors import DataError

    if path.is_file():
        with path.open("rb") as handle:
            total = sum(1 for _ in handle)
        return iter_text_lines(path, "--input"), total
    if not path.exists():
        raise DataError(f"--input: file {path} not found")
    if path.is_dir():
        raise DataError(f"--input: {path} is a directory; give a text file")
    return iter_text_lines(path, "--input", streams=True), None


@click.command("translate")
@click.argument("run_dir", type=click.Path())
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(),
    help="Input text: a file, a named pipe, or - for stdin (the default).",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(dir_okay=False),
    help="Output file (default stdout); written only when complete.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--max-length", type=click.IntRange(min=1), help="Longest output in pieces.")
@click.option(
    "--max-source-length",
    default=1024,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cut longer inputs to this many pieces, with a warning (0: no limit).",
)
@click.option("--search", "search", help="greedy, beam, sample (default: the recipe's).")
@click.option("--beam-size", type=click.IntRange(min=1), help="Beam width (with --search beam).")
@click.option("--n-best", type=click.IntRange(min=1), help="Hypotheses per input (beam).")
@click.option("--length-penalty", type=float, help="Length-penalty α (beam).")
@click.option(
    "--output-format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="jsonl: every hypothesis with its scores.",
)
@click.option(
    "--attention",
    "with_attention",
    is_flag=True,
    help="jsonl: add the attention weights per target piece.",
)
@click.option(
    "--plot-attention",
    "plot_dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Draw each input line's attention (best hypothesis) into DIR/00001.png, ….",
)
@click.option(
    "--ensemble",
    "ensemble",
    multiple=True,
    type=click.Path(),
    metavar="RUN_DIR",
    help="Average with this run's model too (same tokenizer; repeatable).",
)
@click.option("--device", default="auto", show_default=True)
@workers_option
@precision_option
@click.option(
    "--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True
)
def translate_command(
    run_dir: str,
    input_path: str | None,
    output_path: str | None,
    batch_size: int,
    max_length: int | None,
    max_source_length: int,
    search: str | None,
    beam_size: int | None,
    n_best: int | None,
    length_penalty: float | None,
    output_format: str,
    with_attention: bool,
    plot_dir: str | None,
    ensemble: tuple[str, ...],
    device: str,
    workers: int | None,
    precision: str,
    checkpoint: str,
) -> None:
    """Translate text with the model in RUN_DIR (the --out dir of `seq2seq train`)."""
    from seq2seq.bundle import load_run
    from seq2seq.data.dataset import decode_lines
    from seq2seq.device import pick_device
    from seq2seq.errors import DataError, OutputClosed
    from seq2seq.inference import translate_stream

    if with_attention and output_format != "jsonl":
        raise click.UsageError("--attention needs --output-format jsonl")
    target = pick_device(device)
    loaded = load_run(run_dir, checkpoint, str(target))
    if ensemble:
        from seq2seq.ensemble import combine

        others = [load_run(other, checkpoint, str(target)) for other in ensemble]
        loaded = combine([loaded, *others])
    apply_precision(loaded.model, precision)
    spec = search_spec(
        loaded.recipe.search,
        search,
        max_length,
        beam_size=beam_size,
        n_best=n_best,
        length_penalty=length_penalty,
    )
    decoder = build_search(spec)
    if plot_dir is not None:
        _check_plottable(loaded.model, spec, plot_dir)
        # imported only to draw: matplotlib adds 0.4 s to every translate's start-up
        from seq2seq.plots.attention import write_translation_attention
    total = None
    if input_path is None or input_path == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise DataError("standard input is closed; give --input FILE or pipe text in")
        lines = decode_lines(sys.stdin.buffer, "stdin")
    else:
        lines, total = _input_lines(Path(input_path))
    pool = open_workers(workers, loaded.model, decoder, target)
    stream = translate_stream(
        loaded,
        decoder,
        lines,
        batch_size,
        keep_attention=with_attention or plot_dir is not None,
        max_source_length=max_source_length or None,
        workers=pool,
    )
    index = -1
    with pool or nullcontext(), output_file(output_path) as out, _progress(total) as bar:
        for index, translation in enumerate(stream):
            if plot_dir is not None:
                write_translation_attention(plot_dir, index + 1, translation)
            line = (
                translation.text
                if output_format == "text"
                else jsonl_record(index, translation, with_attention)
            )
            try:
                out.write(line + "\n")
                if out is sys.stdout:
                    out.flush()
            except BrokenPipeError as exc:
                raise OutputClosed(
                    f"the reader closed the output after {index} lines; translation stopped"
                ) from exc
            except OSError as exc:
                raise write_failed(output_path or "standard output", exc) from exc
            bar.update(1)
        if index < 0:  # raised inside the block so a partial -o file is never renamed
            where = "standard input" if total is None else f"--input {input_path}"
            raise DataError(f"{where} is empty: there is nothing to translate")


def _check_plottable(model: Any, spec: dict[str, Any], plot_dir: str) -> None:
    """--plot-attention needs a model that attends and a search that keeps the weights."""
    from seq2seq.errors import PlotError

    members = getattr(model, "models", [model])  # an ensemble's members, or the model
    if not any(_attends(member) for member in members):
        raise PlotError("--plot-attention: the model has no attention (model.attention: none)")
    if spec["type"] == "sample":  # sampling keeps no attention weights
        raise click.UsageError("--plot-attention works with --search greedy or beam")
    try:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlotError(f"--plot-attention: cannot create {plot_dir}: {exc.strerror}") from exc


def _attends(model: Any) -> bool:
    """Whether a model (a run's, or an export's traced one) computes attention weights."""
    layout = getattr(model, "layout", None)  # an export dir's model: its state layout tells
    if layout is not None:
        return "weights" in layout.fields
    return getattr(model.decoder, "attention", True) is not None


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        """Nothing to show."""


def _progress(total: int | None) -> Any:
    """A progress bar on stderr when translating a file to a terminal, else nothing."""
    if total is None or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    stream: IO[str] = sys.stderr
    return tqdm(total=total, unit="line", file=stream, dynamic_ncols=True)


COMMANDS = [translate_command]
