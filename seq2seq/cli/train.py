"""`seq2seq train`: train a recipe into a run dir, or resume one."""

from __future__ import annotations

from pathlib import Path

import click

from seq2seq.cli.options import split_overrides
from seq2seq.recipe import load_recipe


@click.command("train")
@click.argument("args", nargs=-1, metavar="[RECIPE] [KEY=VALUE]...")
@click.option("--out", "out", type=click.Path(file_okay=False), help="Run dir to create.")
@click.option(
    "--resume",
    "resume",
    type=click.Path(file_okay=False),
    help="Continue the run in this dir from its latest checkpoint.",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, or auto.")
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Train in N processes on this machine (DDP through torchrun; one per GPU).",
)
@click.pass_context
def train_command(
    ctx: click.Context,
    args: tuple[str, ...],
    out: str | None,
    resume: str | None,
    device: str,
    nproc: int | None,
) -> None:
    """Train RECIPE into --out, with KEY=VALUE overrides (e.g. train.lr=0.0005)."""
    from seq2seq.training.run import check_out_dir, train

    recipe_path, overrides = split_overrides(args)
    if resume is not None:
        if recipe_path is not None or out is not None:
            raise click.UsageError("--resume takes the run dir; give no RECIPE and no --out")
        if nproc is not None:
            check_out_dir(Path(resume), resume=True)
            _launch(ctx, nproc, resume)
        else:
            train(None, resume, device=device, resume=True, overrides=overrides)
        return
    if recipe_path is None:
        raise click.UsageError("give a RECIPE file (or --resume RUN_DIR)")
    if out is None:
        raise click.UsageError("give --out RUN_DIR, the directory the run is written to")
    recipe = load_recipe(recipe_path, overrides)  # user errors end here, before any launch
    if nproc is not None:
        check_out_dir(Path(out), resume=False)
        _launch(ctx, nproc, out)
    else:
        train(recipe, out, device=device)


def _launch(ctx: click.Context, nproc: int, out_dir: str) -> None:
    """Re-run this command line in `nproc` torchrun workers."""
    from seq2seq.training.launch import launch

    root = ctx.find_root()
    argv = (root.obj or {}).get("argv")
    if argv is None:
        raise click.UsageError("--nproc works from the command line only")
    launch(nproc, argv, out_dir)


COMMANDS = [train_command]
