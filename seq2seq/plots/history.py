"""A run's logged metrics (`metrics.jsonl`) as step-ordered records per split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.errors import PlotError
from seq2seq.training.metrics_log import METRICS as METRICS_FILE
from seq2seq.training.metrics_log import parse_metric_lines

NOT_SERIES = ("step", "split")


@dataclass
class History:
    """Training and validation records of one run, each list sorted by step."""

    name: str
    train: list[dict[str, Any]] = field(default_factory=list)
    valid: list[dict[str, Any]] = field(default_factory=list)

    def series(self, split: str, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of `key` in `split` ("train" or "valid"), where it was logged."""
        records = self.train if split == "train" else self.valid
        pairs = [(r["step"], float(r[key])) for r in records if _is_number(r.get(key))]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def valid_metrics(self) -> list[str]:
        """Names of the decoded validation metrics (everything but loss and perplexity)."""
        names: dict[str, None] = {}  # ordered set: first logged first
        for record in self.valid:
            for key, value in record.items():
                if key not in (*NOT_SERIES, "loss", "ppl") and _is_number(value):
                    names[key] = None
        return list(names)

    @property
    def last_step(self) -> int:
        """The latest step logged in either split (0 when nothing is logged)."""
        return max((r["step"] for r in [*self.train, *self.valid]), default=0)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_records(lines: list[str], name: str) -> History:
    """Records from metrics.jsonl lines; unreadable lines (a write cut short) are skipped.

    A resumed run logs again from its last checkpoint, so a record whose step is not past the
    previous one of its split replaces everything logged from that step on.
    """
    history = History(name)
    for record in parse_metric_lines(lines):
        if not isinstance(record.get("step"), int):
            continue
        split = record.get("split")
        if split not in ("train", "valid"):
            continue
        records = history.train if split == "train" else history.valid
        while records and records[-1]["step"] >= record["step"]:
            records.pop()
        records.append(record)
    return history


def read_history(run_dir: str | Path, name: str | None = None) -> History:
    """The metrics of the run in `run_dir`; a clear error when there are none."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise PlotError(f"{directory}: no such run dir")
    path = directory / METRICS_FILE
    if not path.is_file():
        raise PlotError(
            f"{directory} has no {METRICS_FILE}: not a run dir, or training has not logged yet"
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PlotError(f"cannot read {path}: {exc.strerror or exc}") from exc
    history = parse_records(text.splitlines(), name or directory.name)
    if not history.train and not history.valid:
        raise PlotError(f"{path} holds no metrics yet")
    return history
