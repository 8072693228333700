"""Pictures: metrics histories, curve panels, attention figures, atomic PNG writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from seq2seq.errors import PlotError
from seq2seq.plots.attention import MAX_PIECES, attention_figure, figure_name
from seq2seq.plots.curves import curves_figure, plot_runs, run_names
from seq2seq.plots.history import History, parse_records, read_history
from seq2seq.plots.saving import save_png


def _lines(*records: dict) -> list[str]:
    return [json.dumps(r) for r in records]


def _write_metrics(run: Path, bleu_scale: float = 1.0) -> Path:
    run.mkdir(parents=True)
    records = []
    for step in range(10, 101, 10):
        records.append(
            {"step": step, "split": "train", "loss": 5 - step / 50, "lr": 1e-3, "tok_per_s": 900.0}
        )
        if step % 50 == 0:
            records.append(
                {
                    "step": step,
                    "split": "valid",
                    "loss": 4.0,
                    "ppl": 54.6,
                    "bleu": step * bleu_scale,
                }
            )
    (run / "metrics.jsonl").write_text("\n".join(_lines(*records)) + "\n", encoding="utf-8")
    return run


def test_resumed_records_replace_the_ones_they_repeat() -> None:
    """A run resumed from step 10 logs 20 again: the second 20 wins, the first 30 is dropped."""
    history = parse_records(
        _lines(
            {"step": 10, "split": "train", "loss": 3.0},
            {"step": 20, "split": "train", "loss": 2.0},
            {"step": 30, "split": "train", "loss": 1.0},
            {"step": 20, "split": "valid", "loss": 2.5, "bleu": 7.0},
            {"step": 20, "split": "train", "loss": 2.2},
        ),
        "run",
    )
    assert history.series("train", "loss") == ([10, 20], [3.0, 2.2])
    assert history.series("valid", "bleu") == ([20], [7.0])
    assert history.last_step == 20


def test_unreadable_lines_are_skipped_and_metrics_found() -> None:
    """A line cut short by a crash, or foreign JSON, does not stop the picture."""
    history = parse_records(
        [
            '{"step": 5, "split": "valid", "loss": 2.0, "ppl": 7.4, "bleu": 3.0, "chrf": 9.0}',
            '{"step": 10, "split": "tra',
            '["not", "a", "record"]',
            '{"step": "x", "split": "train"}',
            '{"step": 10, "split": "valid", "loss": 1.0, "rougeL": 4.0}',
        ],
        "run",
    )
    assert len(history.valid) == 2 and not history.train
    assert history.valid_metrics() == ["bleu", "chrf", "rougeL"]


def test_read_history_errors_name_the_dir(tmp_path: Path) -> None:
    """Missing dir, dir without metrics.jsonl, empty metrics: one clear message each."""
    with pytest.raises(PlotError, match="no such run dir"):
        read_history(tmp_path / "nope")
    with pytest.raises(PlotError, match=r"has no metrics.jsonl: not a run dir"):
        read_history(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(PlotError, match="holds no metrics yet"):
        read_history(tmp_path)


def test_curves_figure_has_four_panels_and_names_each_run(tmp_path: Path) -> None:
    """Two runs overlaid: every panel's legend names both runs."""
    a = read_history(_write_metrics(tmp_path / "a"))
    b = read_history(_write_metrics(tmp_path / "b", 2.0))
    figure = curves_figure([a, b])
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == [
        "loss (per target token)",
        "validation metrics",
        "learning rate",
        "training speed",
    ]
    for axes in figure.axes:
        labels = [t.get_text() for t in axes.get_legend().get_texts()]
        assert any(label.startswith("a") for label in labels), labels
        assert any(label.startswith("b") for label in labels), labels
    metrics = figure.axes[1]
    assert {line.get_label() for line in metrics.lines} == {"a · bleu", "b · bleu"}
    assert list(metrics.lines[1].get_ydata()) == [100.0, 200.0]


def test_empty_panel_says_so() -> None:
    """A run that has not validated yet: the metrics panel says nothing is logged."""
    history = History("r", train=[{"step": 5, "split": "train", "loss": 2.0}])
    figure = curves_figure([history])
    assert [t.get_text() for t in figure.axes[1].texts] == ["nothing logged yet"]


def test_run_names_disambiguate_equal_dir_names() -> None:
    """Two dirs called `run` are told apart by their paths."""
    assert run_names(["x/run", "y/run", "z/other"]) == ["x/run", "y/run", "other"]


def test_plot_runs_writes_a_png_atomically(tmp_path: Path) -> None:
    """The PNG is complete and no temporary file is left."""
    out = plot_runs([_write_metrics(tmp_path / "a")], tmp_path / "out.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "out.png"]


def test_save_png_into_a_missing_dir_is_a_plot_error(tmp_path: Path) -> None:
    """An unwritable target is one message, not a traceback."""
    figure = attention_figure(["a", "</s>"], ["b", "</s>"], torch.eye(2))
    with pytest.raises(PlotError, match="cannot write"):
        save_png(figure, tmp_path / "missing" / "x.png")


def test_attention_figure_single_panel_labels_pieces() -> None:
    """Target pieces label the rows, source pieces the (rotated) columns."""
    source, target = ["▁ein", "▁Haus", "</s>"], ["▁a", "▁house", "</s>"]
    figure = attention_figure(source, target, torch.full((3, 3), 1 / 3))
    images = [axes for axes in figure.axes if axes.images]
    assert len(images) == 1
    axes = images[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == source
    assert [t.get_text() for t in axes.get_yticklabels()] == target
    assert axes.get_xticklabels()[0].get_rotation() == 90


def test_attention_figure_draws_one_panel_per_head() -> None:
    """Multi-head weights (n, T, S) give n panels titled by head."""
    heads = torch.softmax(torch.randn(3, 4, 5), -1)
    figure = attention_figure(list("abcde"), list("wxyz"), heads.mean(0), heads)
    panels = [axes for axes in figure.axes if axes.images]
    assert [axes.get_title() for axes in panels] == ["head 1", "head 2", "head 3"]
    assert torch.allclose(torch.tensor(panels[1].images[0].get_array()), heads[1])


def test_attention_figure_grows_with_length_and_caps_long_sentences() -> None:
    """Longer sentences get larger figures; beyond MAX_PIECES the matrix is cut and says so."""
    small = attention_figure(list("abc"), list("xyz"), torch.ones(3, 3) / 3)
    n = MAX_PIECES + 40
    big = attention_figure(
        [f"s{i}" for i in range(n)], [f"t{i}" for i in range(n)], torch.ones(n, n) / n
    )
    assert big.get_size_inches()[0] > 3 * small.get_size_inches()[0]
    axes = next(a for a in big.axes if a.images)
    assert axes.images[0].get_array().shape == (MAX_PIECES, MAX_PIECES)
    assert f"first {MAX_PIECES} pieces" in big.get_suptitle()


def test_figure_names_are_numbered_by_line() -> None:
    """Line 1 → 00001.png, so files sort in input order."""
    assert [figure_name(1), figure_name(123)] == ["00001.png", "00123.png"]


def test_save_png_writes_a_pipe_in_place(tmp_path: Path) -> None:
    """A pipe or device (`--out /dev/null`) is written, not replaced by a renamed file; a
    directory is a clear error."""
    figure = attention_figure(["a", "</s>"], ["b", "</s>"], torch.eye(2))
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    save_png(figure, pipe)
    reader.join(timeout=30)
    assert pipe.is_fifo()
    assert received and received[0].startswith(b"\x89PNG")
    with pytest.raises(PlotError, match="cannot write"):
        save_png(figure, tmp_path)
