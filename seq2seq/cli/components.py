"""`seq2seq components`: every registered component, its origin and its arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click

from seq2seq import registry
from seq2seq.schema import describe


def signature_text(kind: str, factory: Callable[..., Any]) -> str:
    """The recipe-settable arguments of a factory with types and defaults."""
    parts = []
    for name, (annotation, default) in registry.arguments(factory).items():
        if name in registry.PROVIDED[kind]:
            continue
        text = f"{name}: {describe(annotation)}"
        if default is not inspect.Parameter.empty:
            text += f" = {default!r}"
        parts.append(text)
    return ", ".join(parts) or "(no arguments)"


def describe_entry(kind: str, name: str, origin: str, load: bool) -> tuple[str, str]:
    """(one-line summary, arguments) of a component; plugins are imported only with `load`."""
    loaded = name in registry.snapshot()[kind]
    if not loaded and not load:
        return "", "(plugin not imported; `--load` shows its arguments)"
    try:
        factory = registry.get(kind, name).factory
    except registry.PluginError as exc:
        return "", f"FAILED TO LOAD: {str(exc).splitlines()[-1].strip()}"
    summary = (inspect.getdoc(factory) or "").split("\n", 1)[0]
    return summary, signature_text(kind, factory)


@click.command("components")
@click.argument("kind", required=False, type=click.Choice(registry.KINDS))
@click.option("--load", is_flag=True, help="Import plugins to show their arguments too.")
def components_command(kind: str | None, load: bool) -> None:
    """List components (optionally of one KIND) with origin and arguments."""
    for current in [kind] if kind else list(registry.KINDS):
        click.echo(f"{current}:")
        for name, origin in registry.names(current).items():
            summary, args = describe_entry(current, name, origin, load)
            click.echo(f"  {name:14s} [{origin}] {summary}")
            click.echo(f"  {'':14s} {args}")


COMMANDS = [components_command]
