"""Stopping training cleanly: the first SIGINT or SIGTERM asks the loop to save and stop; a
second SIGINT stops at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType, TracebackType


class GracefulStop:
    """While active, records a stop request instead of dying mid-update."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now
        self.requested = signal.Signals(signum).name
        _say(
            f"{self.requested}: stopping after this update with a checkpoint "
            "(Ctrl-C again stops at once and keeps the last checkpoint)\n"
        )

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
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _say(message: str) -> None:
    """Write to stderr's descriptor directly: the handler may have interrupted a write to
    `sys.stderr`, which would refuse a second, reentrant one."""
    with contextlib.suppress(OSError):  # no stderr (closed): the request stands all the same
        os.write(2, message.encode("utf-8", "replace"))
