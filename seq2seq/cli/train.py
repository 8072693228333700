"""`seq2seq train`: train a recipe into a run dir, or resume one."""

from __future__ import annotations

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
def train_command(args: tuple[str, ...], out: str | None, resume: str | None, device: str) -> None:
    """Train RECIPE into --out, with KEY=VALUE overrides (e.g. train.lr=0.0005)."""
    from seq2seq.training.run import train

    recipe_path, overrides = split_overrides(args)
    if resume is not None:
        if recipe_path is not None or out is not None:
            raise click.UsageError("--resume takes the run dir; give no RECIPE and no --out")
        train(None, resume, device=device, resume=True, overrides=overrides)
        return
    if recipe_path is None:
        raise click.UsageError("give a RECIPE file (or --resume RUN_DIR)")
    if out is None:
        raise click.UsageError("give --out RUN_DIR, the directory the run is written to")
    recipe = load_recipe(recipe_path, overrides)
    train(recipe, out, device=device)


COMMANDS = [train_command]
