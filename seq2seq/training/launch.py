"""`seq2seq train --nproc N`: start N training processes on this machine through torchrun's own
elastic launcher, and turn a failed process into one message naming its rank."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from seq2seq.errors import InterruptedRun, Seq2SeqError

GENERIC = "To enable traceback"  # torchrun's text when a worker left no error file


def without_nproc(argv: Sequence[str]) -> list[str]:
    """The command line minus `--nproc N` / `--nproc=N`: what every worker runs."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def describe_failure(rank: int, failure: Any) -> str:
    """One line for a failed worker: its rank, how it ended and its error."""
    message = failure.message
    if isinstance(message, dict):  # an error file written by the worker
        message = message.get("message", "")
    message = str(message).strip().removeprefix(f"{Seq2SeqError.__name__}: ")
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with code {failure.exitcode}"
    if not message or message.startswith((GENERIC, "Signal ")):
        message = "see its output above"
    return f"rank {rank} (local rank {failure.local_rank}) {how}: {message}"


def rank_label() -> str:
    """'rank N: ' inside a multi-process job, else ''; prefixes error messages."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f"rank {os.environ.get('RANK', '0')}: " if world > 1 else ""


def record_failure(message: str) -> None:
    """Leave the error where torchrun looks for it, so its summary names the rank and the error."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    try:
        raise Seq2SeqError(message)
    except Seq2SeqError as exc:  # the handler reads the exception being handled
        ErrorHandler().record_exception(exc)


def launch(nproc: int, argv: Sequence[str], out_dir: str) -> None:
    """Run `python -m seq2seq ARGV` in `nproc` local processes under torchrun (standalone)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "seq2seq", *without_nproc(argv)]
    )
    resume = f"continue with: seq2seq train --nproc {nproc} --resume {out_dir}"
    try:
        run(args)
    except ChildFailedError as exc:
        # the rank that failed first, before ranks that only lost contact with it
        rank, failure = min(
            exc.failures.items(),
            key=lambda item: ("lost contact" in str(item[1].message), item[1].timestamp),
        )
        if failure.exitcode == InterruptedRun.exit_code:
            raise InterruptedRun(f"stopped; {resume}") from None
        raise Seq2SeqError(f"training failed: {describe_failure(rank, failure)}") from None
    except SignalException as exc:
        raise InterruptedRun(f"{exc.sigval.name}: stopped; {resume}") from None
