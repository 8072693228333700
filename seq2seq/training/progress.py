"""Live training progress: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("seq2seq.train")


class Progress:
    """Shows step, loss, tokens/s, learning rate and ETA."""

    def __init__(
        self, total_steps: int | None, start_step: int, every: int, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.every = max(1, every)
        self.total = total_steps
        self.start_step = start_step
        self.started = time.perf_counter()
        self.window_start = self.started
        self.window_tokens = 0
        self.window_loss = 0.0
        self.window_norm = 0.0
        self.window_steps = 0
        self.bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps,
                initial=start_step,
                file=self.stream,
                unit="step",
                dynamic_ncols=True,
                leave=True,
            )

    def update(
        self, step: int, loss: float, tokens: int, grad_norm: float, lr: float
    ) -> dict[str, float] | None:
        """Record one step; every `every` steps show and return the window's averages."""
        self.window_tokens += tokens
        self.window_loss += loss * tokens
        self.window_norm += grad_norm
        self.window_steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if step % self.every:
            return None
        now = time.perf_counter()
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        window = {
            "loss": self.window_loss / max(self.window_tokens, 1),
            "grad_norm": self.window_norm / max(self.window_steps, 1),
            "lr": lr,
            "tok_per_s": rate,
        }
        self.window_start, self.window_tokens = now, 0
        self.window_loss = self.window_norm = 0.0
        self.window_steps = 0
        eta = ""
        if self.total:
            per_step = (now - self.started) / max(step - self.start_step, 1)
            eta = f"  eta {_clock(per_step * max(self.total - step, 0))}"
        text = (
            f"loss {window['loss']:.3f}  tok/s {rate:,.0f}  lr {lr:.2e}  "
            f"|g| {window['grad_norm']:.2f}{eta}"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
        else:
            total = f"/{self.total}" if self.total else ""
            log.info("step %d%s  %s", step, total, text)
        return window

    def message(self, text: str) -> None:
        """A line that does not break the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            log.info("%s", text)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


class SilentProgress(Progress):
    """What ranks other than 0 use: they show nothing."""

    def __init__(self) -> None:
        self.bar = None

    def update(
        self, step: int, loss: float, tokens: int, grad_norm: float, lr: float
    ) -> dict[str, float] | None:
        """Nothing to show."""
        return None

    def message(self, text: str) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
