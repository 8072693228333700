"""`seq2seq validate`: check a recipe and build its model without training."""

from __future__ import annotations

from pathlib import Path

import click

from seq2seq.cli.options import split_overrides


@click.command("validate")
@click.argument("args", nargs=-1, required=True, metavar="RECIPE [KEY=VALUE]...")
@click.option(
    "--vocab-size",
    default=None,
    type=int,
    help="Vocabulary size for the model summary (default: the tokenizer's vocab_size).",
)
def validate_command(args: tuple[str, ...], vocab_size: int | None) -> None:
    """Check RECIPE, print the model structure and parameter count, or list every problem."""
    from seq2seq import registry
    from seq2seq.assemble import build_model, count_parameters
    from seq2seq.recipe import load_recipe

    recipe_path, overrides = split_overrides(args)
    if recipe_path is None:
        raise click.UsageError("give a RECIPE file")
    recipe = load_recipe(recipe_path, overrides)
    if vocab_size is None:
        _, kwargs = registry.split_spec(recipe.data.tokenizer)
        vocab_size = int(kwargs.get("vocab_size", 8000))
    model = build_model(recipe.model, vocab_size, vocab_size)
    click.echo(str(model))
    click.echo(f"parameters: {count_parameters(model):,} (with a vocabulary of {vocab_size:,})")
    for label, corpus in (("data.train", recipe.data.train), ("data.valid", recipe.data.valid)):
        files = [] if corpus is None else [corpus.source, corpus.target, corpus.tsv]
        for path in files:
            if path is not None and not Path(path).is_file():
                click.echo(f"note: {label}: {path} does not exist yet (needed to train)", err=True)
    click.echo(f"{recipe_path}: OK")


COMMANDS = [validate_command]
