"""Pieces shared by several commands: splitting recipe arguments, search options, output files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from seq2seq import registry
from seq2seq.errors import Problem, RecipeError, Seq2SeqError


def split_overrides(args: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """`RECIPE key=value ...` → (recipe path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def search_spec(base: Any, search: str | None, max_length: int | None, **options: Any) -> Any:
    """The recipe's search spec with command-line changes applied (None options are unset)."""
    name, kwargs = registry.split_spec(base)
    if search is not None and search != name:
        name, kwargs = search, {}
    if max_length is not None:
        kwargs["max_length"] = max_length
    kwargs.update({k: v for k, v in options.items() if v is not None})
    spec = {"type": name, **kwargs}
    problems = registry.check("search", spec, "--search")
    if problems:
        raise RecipeError("the command line", [Problem(p.path, p.message) for p in problems])
    return spec


def build_search(spec: Any) -> Any:
    """Instantiate a search spec."""
    return registry.build("search", spec, where="--search")


@contextmanager
def output_file(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a file written under a temporary name and renamed only when complete."""
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    if target.exists() and not target.is_file():  # /dev/null, a named pipe: write, never replace
        with _open_text(target, target) as handle:
            yield handle
            _close(handle, target)
        return
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with _open_text(tmp, target) as handle:
            yield handle
            _close(handle, target)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise write_failed(str(target), exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _open_text(path: Path, target: Path) -> IO[str]:
    """`path` opened for UTF-8 text; a failure names `target`, the file the user asked for."""
    try:
        return open(path, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise write_failed(str(target), exc) from exc


def _close(handle: IO[str], target: Path) -> None:
    """Close after the last write, so a full disk is reported with the file's name (a failed
    close still closes: the `with` around it has nothing left to do)."""
    try:
        handle.close()
    except OSError as exc:
        raise write_failed(str(target), exc) from exc


def write_failed(where: str, exc: OSError) -> Seq2SeqError:
    """The error for output that could not be written (a full disk, a device such as /dev/full)."""
    return Seq2SeqError(f"cannot write {where}: {exc.strerror or exc}")


def workers_option(command: Any) -> Any:
    """The --workers option of the commands that decode files (translate, evaluate)."""
    import click

    return click.option(
        "--workers",
        default="auto",
        show_default=True,
        callback=_parse_workers,
        help="Decoding processes of one thread each, on the CPU: auto (one per thread with 2 to "
        "4 threads, on Linux) or a number (0: decode in this process with all its threads).",
    )(command)


def _parse_workers(_ctx: Any, _param: Any, value: str) -> int | None:
    """--workers: "auto" (None) or a count from 0 to the CPU count; click.BadParameter else."""
    import click

    if value == "auto":
        return None
    cpus = os.cpu_count() or 1
    if not value.isdecimal() or int(value) > cpus:
        raise click.BadParameter(
            f"{value!r} is not 'auto' or a whole number from 0 to {cpus} (the CPUs here)",
            param_hint="--workers",
        )
    return int(value)


PRECISION_CHOICES = ["fp32", "int8-output"]  # = modules.projection.DECODING_PRECISIONS


def precision_option(command: Any) -> Any:
    """The --precision option of the commands that decode (translate, evaluate, serve)."""
    import click

    return click.option(
        "--precision",
        type=click.Choice(PRECISION_CHOICES),
        default="fp32",
        show_default=True,
        help="int8-output: the output layer's product in int8 (CPU): 1.4-1.6x faster decoding "
        "measured, a few outputs change.",
    )(command)


def apply_precision(model: Any, precision: str) -> None:
    """Set the decoding precision --precision names on a loaded model (before workers fork)."""
    if precision != "fp32":  # fp32 is how a model loads: no need to import torch's side here
        from seq2seq.modules.projection import set_output_precision

        set_output_precision(model, precision)


def open_workers(count: int | None, model: Any, search: Any, device: Any) -> Any:
    """The decoding workers --workers asks for (None: decode in this process)."""
    import torch

    from seq2seq.workers import DecodeWorkers, auto_workers, can_fork

    if count is None:
        count = auto_workers(device)
    elif count > 1 and torch.device(device).type != "cpu":
        raise Seq2SeqError(f"--workers {count} decodes on the CPU; use --device cpu or --workers 0")
    elif count > 1 and not can_fork():
        raise Seq2SeqError(
            f"--workers {count} needs forked processes (Linux, and not from a daemon process); "
            "use --workers 0"
        )
    return DecodeWorkers(model, search, count) if count > 1 else None
