"""Stopping cleanly on signals: the first SIGINT or SIGTERM asks the training loop to save and
stop; a second SIGINT stops at once.

In the `seq2seq` process (`command_interrupts`) "at once" is an immediate exit with code 130:
a KeyboardInterrupt raised from a handler can land inside a weakref callback or a `__del__`,
where Python prints it as "Exception ignored" and carries on, or inside the interpreter's
shutdown, where it prints a traceback. Exiting is safe for the run: checkpoints are written
under temporary names and renamed when complete, so the last complete one stays, and the next
save removes the leftovers (the same as a kill -9). Where training runs inside someone else's
process (a notebook, a test), the second Ctrl-C raises KeyboardInterrupt instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType, TracebackType

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class _Process:
    """What this process has seen of Ctrl-C, and whether it is the `seq2seq` command."""

    command = False  # set by command_interrupts: a second Ctrl-C exits the process
    interrupted = False  # a SIGINT was taken (or the command is ending): the next one exits


_process = _Process()


def command_interrupts() -> None:
    """For the `seq2seq` command's process: the first Ctrl-C raises KeyboardInterrupt, the next
    one exits at once. Not in an interactive shell (`%run -m seq2seq` in IPython), whose later
    Ctrl-Cs must not end it, and only in the main thread, where handlers live."""
    interactive = hasattr(sys, "ps1") or "IPython" in sys.modules
    if not interactive and threading.current_thread() is threading.main_thread():
        _process.command = True
        signal.signal(signal.SIGINT, _command_interrupt)


def command_ending() -> None:
    """The command has finished and is exiting: a Ctrl-C now exits at once rather than raise in
    an atexit callback. (In the interpreter's last moments Python puts back the default
    handler, and a Ctrl-C then ends the process by the signal: no traceback either.)"""
    _process.interrupted = True


def _command_interrupt(signum: int, frame: FrameType | None) -> None:
    if _process.interrupted:
        _exit_now("interrupted\n")
    _process.interrupted = True
    raise KeyboardInterrupt


def _exit_now(message: str) -> None:
    _say(message)
    os._exit(INTERRUPTED)


class GracefulStop:
    """While active, records a stop request instead of dying mid-update."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            if signum != signal.SIGINT:  # SIGTERM again: the save is under way already
                return
            if _process.command:  # second Ctrl-C: leave now
                _exit_now("SIGINT again: stopped at once; the last complete checkpoint is kept\n")
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        _process.interrupted = _process.interrupted or signum == signal.SIGINT
        _acknowledge(self.requested)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # SIGINT last: a Ctrl-C during the restore still finds a live handler for it
        for signum, handler in reversed(self._previous.items()):
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _acknowledge(name: str) -> None:
    """Say at once that the stop is under way: an update can take a while. Once, from rank 0:
    under torchrun each rank is signalled by the launcher, whose second Ctrl-C is its own."""
    if os.environ.get("RANK", "0") != "0":
        return
    by_hand = name == "SIGINT" and os.environ.get("WORLD_SIZE", "1") == "1"
    again = " (Ctrl-C again stops at once and keeps the last checkpoint)" if by_hand else ""
    # on a terminal the progress bar holds the line: start a new one
    start = "\n" if os.isatty(2) else ""
    _say(f"{start}{name}: stopping after this update with a checkpoint{again}\n")


def _say(message: str) -> None:
    """Write to stderr's descriptor directly: the handler may have interrupted a write to
    `sys.stderr`, which would refuse a second, reentrant one."""
    with contextlib.suppress(OSError):  # no stderr (closed): the request stands all the same
        os.write(2, message.encode("utf-8", "replace"))
