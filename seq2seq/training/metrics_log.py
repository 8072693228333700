"""metrics.jsonl: one JSON record per line, appended during training, trimmed on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq.errors import StorageError
from seq2seq.training.checkpoint import atomic_write

METRICS = "metrics.jsonl"


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one record; a failed write is a StorageError naming the file."""
    path = run_dir / METRICS
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete record; a line cut short by a kill is skipped."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return parse_metric_lines(path.read_text("utf-8", errors="replace").splitlines())


def parse_metric_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The records of metrics.jsonl lines; lines that are not a JSON object are skipped."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def trim_metrics(run_dir: Path, step: int) -> None:
    """Keep records up to `step`: a resumed run redoes the steps after its checkpoint."""
    path = run_dir / METRICS
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if not _logged_after(r, step)]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _logged_after(record: dict[str, Any], step: int) -> bool:
    """Whether a record is of a step after `step` (one without a numeric step is kept as it is:
    the file may have been edited, and resuming must not fail on it)."""
    logged = record.get("step")
    return isinstance(logged, (int, float)) and not isinstance(logged, bool) and logged > step
