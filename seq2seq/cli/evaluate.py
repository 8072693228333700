"""`seq2seq evaluate` (translate and score) and `seq2seq score` (score existing files)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from seq2seq.cli.options import (
    apply_precision,
    build_search,
    open_workers,
    output_file,
    precision_option,
    search_spec,
    workers_option,
)


def _metric_list(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return default
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one metric", param_hint="--metric")
    return names


def _check_metrics(names: list) -> None:  # type: ignore[type-arg]
    """Unknown metric names fail before any decoding."""
    from seq2seq import registry
    from seq2seq.errors import RecipeError

    problems = [p for name in names for p in registry.check("metric", name, "--metric")]
    if problems:
        raise RecipeError("--metric", problems)


def _print_scores(scores: list, count: int) -> None:  # type: ignore[type-arg]
    click.echo(f"segments: {count}")
    for score in scores:
        click.echo(f"{score.name:10s} {score.value:6.2f}   {score.signature}")


@click.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--source", required=True, type=click.Path(), help="Source text, one per line.")
@click.option("--reference", required=True, type=click.Path(), help="Reference translations.")
@click.option(
    "--metric",
    "metrics",
    help="Comma-separated, e.g. bleu,chrf,rougeL (default: the recipe's metrics).",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(dir_okay=False),
    help="Also write the translations here.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--max-length", type=click.IntRange(min=1))
@click.option("--search", "search")
@click.option("--device", default="auto", show_default=True)
@workers_option
@precision_option
def evaluate_command(
    run_dir: str,
    source: str,
    reference: str,
    metrics: str | None,
    output_path: str | None,
    batch_size: int,
    max_length: int | None,
    search: str | None,
    device: str,
    workers: int | None,
    precision: str,
) -> None:
    """Translate --source with RUN_DIR's model and score against --reference."""
    from seq2seq.bundle import load_run
    from seq2seq.data.dataset import read_lines
    from seq2seq.device import pick_device
    from seq2seq.errors import DataError
    from seq2seq.inference import translate_texts
    from seq2seq.metrics.score import score_all

    src = read_lines(Path(source), "--source")
    refs = read_lines(Path(reference), "--reference")
    if len(src) != len(refs):
        raise DataError(f"--source has {len(src)} lines but --reference has {len(refs)}")
    where = pick_device(device)
    loaded = load_run(run_dir, "best", str(where))
    apply_precision(loaded.model, precision)
    names = _metric_list(metrics, list(loaded.recipe.metrics))  # type: ignore[arg-type]
    _check_metrics(names)
    decoder = build_search(search_spec(loaded.recipe.search, search, max_length))
    with open_workers(workers, loaded.model, decoder, where) or nullcontext() as pool:
        hyps = translate_texts(loaded, decoder, src, batch_size, pool)
    scores = score_all(names, hyps, refs)
    if output_path is not None:
        with output_file(output_path) as out:
            out.writelines(h + "\n" for h in hyps)
    _print_scores(scores, len(hyps))


@click.command("score")
@click.option("--hyp", required=True, type=click.Path(), help="Hypotheses, one per line.")
@click.option("--ref", required=True, type=click.Path(), help="References, one per line.")
@click.option(
    "--metric",
    "metrics",
    default="bleu,chrf",
    show_default=True,
    help="Comma-separated: bleu, chrf, ter, rouge1, rouge2, rougeL, rougeLsum.",
)
def score_command(hyp: str, ref: str, metrics: str) -> None:
    """Score existing hypotheses against references."""
    from seq2seq.data.dataset import read_lines
    from seq2seq.errors import DataError
    from seq2seq.metrics.score import score_all

    names = _metric_list(metrics, [])
    _check_metrics(names)
    hyps = read_lines(Path(hyp), "--hyp")
    refs = read_lines(Path(ref), "--ref")
    if len(hyps) != len(refs):
        raise DataError(
            f"--hyp {hyp} has {len(hyps)} lines but --ref {ref} has {len(refs)}; "
            "they must be aligned line by line"
        )
    scores = score_all(names, hyps, refs)
    _print_scores(scores, len(hyps))


COMMANDS = [evaluate_command, score_command]
