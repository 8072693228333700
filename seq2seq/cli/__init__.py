"""The `seq2seq` command: a click group; every user error ends in one message and exit code 1."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import click

from seq2seq import __version__, registry
from seq2seq.errors import OutputClosed, Seq2SeqError
from seq2seq.training.launch import rank_label, record_failure
from seq2seq.training.signals import INTERRUPTED, command_ending, command_interrupts

# errors of a write that found no room: a full disk or quota (the output device included)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class Seq2SeqGroup(click.Group):
    """The command group; a closed output pipe becomes `OutputClosed` (exit 141).

    click turns a broken pipe into a bare exit 1 on its own; raised as our error instead, it
    reaches `main` and ends like a writer killed by SIGPIPE, as `| head -1` expects.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """Parse the arguments; `--help` and `--version` write here."""
        with _pipe_closed_is_a_stop():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command."""
        with _pipe_closed_is_a_stop():
            return super().invoke(ctx)


@contextlib.contextmanager
def _pipe_closed_is_a_stop() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError as exc:
        raise OutputClosed("the reader closed the output") from exc


@click.group(cls=Seq2SeqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seq2seq")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
@click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import a local module that registers components (repeatable).",
)
def cli(debug: bool, quiet: bool, imports: tuple[str, ...]) -> None:
    """Attention-based RNN sequence-to-sequence models: train, translate, evaluate."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score's chatter
    owns_process = bool((click.get_current_context().obj or {}).get("owns_process"))
    with _collector_paused() if owns_process else contextlib.nullcontext():
        if imports:  # torch and every component are imported in these two calls
            registry.import_modules(imports)
        problems = registry.plugin_problems()  # read from metadata: no plugin code runs
    for problem in problems:
        logging.getLogger("seq2seq").warning("plugin problem: %s", problem)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the modules are imported; then their objects are frozen
    (moved where the collector no longer looks).

    Importing torch leaves about 170,000 objects for the collector to track; a full pass over
    them takes about 0.08 s, and the interpreter's exit makes such passes: `python -c "import
    torch"` took 1.45 s, and 1.15 s with gc.freeze() after the import. Frozen, they also keep
    forked decoding workers from writing to those objects' pages. Only where the command owns
    the process (`main` without argv): frozen objects are never freed (garbage the imports
    leave is kept once), which a test process calling the CLI many times would feel.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and `python -m seq2seq`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # this process is the command: a second Ctrl-C exits at once
        command_interrupts()
    try:
        code = _run(args, owns_process=argv is None)
    except KeyboardInterrupt:  # Ctrl-C while the command's ending was being reported
        code = INTERRUPTED
    finally:
        if argv is None:
            command_ending()
    sys.exit(code)


def _run(args: list[str], owns_process: bool = False) -> int:
    """Run the command; every way it can end becomes one message and an exit code."""
    debug = "--debug" in args
    code = 0
    try:
        cli.main(
            args=args,
            prog_name="seq2seq",
            standalone_mode=False,
            obj={"argv": args, "owns_process": owns_process},
        )
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort as exc:  # click's form of Ctrl-C (and of EOF at a prompt)
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        click.echo("interrupted" if interrupted else "aborted", err=True)
        code = 130
    except Seq2SeqError as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, OutputClosed):
            _silence_stdout()
        prefix = "stopped" if exc.exit_code in (130, 141) else "error"
        _report(f"{prefix}: {rank_label()}{exc}", str(exc), exc.exit_code)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except BrokenPipeError:  # the reader went away (e.g. `| head -1`): stop quietly, like cat
        _silence_stdout()
        code = OutputClosed.exit_code
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:  # the machine, not a bug
            _silence_stdout()  # when stdout is what filled up, its final flush would fail again
            where = f" {exc.filename}" if exc.filename else " the output"
            _report(f"error: {rank_label()}cannot write{where}: {exc.strerror}", str(exc), 1)
            code = 1
        else:
            _report(
                f"internal error: {rank_label()}{type(exc).__name__}: {exc}\n"
                "this is a bug in seq2seq; rerun with --debug for the traceback and report it",
                f"{type(exc).__name__}: {exc}",
                3,
            )
            code = 3
    return code


def _report(shown: str, error: str, code: int) -> None:
    """Print the error; inside a torchrun worker also leave it for torchrun's failure summary."""
    click.echo(shown, err=True)
    if code not in (130, 141):
        record_failure(error.splitlines()[0] if error else shown)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _register_commands() -> None:
    from seq2seq.cli import components, evaluate, export, plot, serve, train, translate, validate

    for module in (train, translate, evaluate, validate, components, plot, export, serve):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()
