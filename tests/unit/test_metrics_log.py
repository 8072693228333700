"""metrics.jsonl: appending, reading past a cut line, trimming on resume."""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.training.metrics_log import METRICS, append_metrics, read_metrics, trim_metrics


def test_trim_keeps_records_up_to_the_step_and_survives_odd_lines(tmp_path: Path) -> None:
    """Records after the resumed step go; a line cut by a kill is dropped; a record whose step
    is not a number (an edited file) stays, and trimming does not fail on it."""
    for step in (1, 2, 3):
        append_metrics(tmp_path, {"step": step, "split": "train", "loss": 1.0 / step})
    with (tmp_path / METRICS).open("a", encoding="utf-8") as handle:
        handle.write('{"step": "two", "note": "edited by hand"}\n{"step": null}\n{"step": 4, "spl')
    trim_metrics(tmp_path, 2)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, "two", None]
    lines = (tmp_path / METRICS).read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
