"""`seq2seq components`: every registered component, its origin and its arguments."""

from __future__ import annotations

import inspect

import click

from seq2seq import registry


def _signature(kind: str, factory: object) -> str:
    provided = registry.PROVIDED[kind]
    parts = []
    for name, (annotation, default) in registry.arguments(factory).items():  # type: ignore[arg-type]
        if name in provided:
            continue
        from seq2seq.schema import describe

        text = f"{name}: {describe(annotation)}"
        if default is not inspect.Parameter.empty:
            text += f" = {default!r}"
        parts.append(text)
    return ", ".join(parts) or "(no arguments)"


@click.command("components")
@click.argument("kind", required=False, type=click.Choice(registry.KINDS))
@click.option("--load", is_flag=True, help="Import plugins to show their arguments too.")
def components_command(kind: str | None, load: bool) -> None:
    """List components (optionally of one KIND) with origin and arguments."""
    for problem in registry.plugin_problems():
        click.echo(f"warning: {problem}", err=True)
    for current in [kind] if kind else list(registry.KINDS):
        click.echo(f"{current}:")
        for name, origin in registry.names(current).items():
            is_plugin = origin != registry.BUILTIN and not origin.startswith("module ")
            loaded = name in registry.snapshot()[current]
            if is_plugin and not loaded and not load:
                args = "(a plugin, not imported: --load shows its arguments)"
            else:
                try:
                    entry = registry.get(current, name)
                    args = _signature(current, entry.factory)
                except registry.PluginError as exc:
                    args = f"FAILED TO LOAD: {str(exc).splitlines()[-1].strip()}"
            doc = ""
            if loaded or not is_plugin or load:
                try:
                    factory = registry.get(current, name).factory
                    doc = (
                        (inspect.getdoc(factory) or "").splitlines()[0]
                        if inspect.getdoc(factory)
                        else ""
                    )
                except registry.PluginError:
                    doc = ""
            click.echo(f"  {name:14s} [{origin}] {doc}")
            click.echo(f"  {'':14s} {args}")


COMMANDS = [components_command]
