"""What a run records as it trains besides checkpoints: metrics.jsonl, curves.png and,
optionally, TensorBoard events. Pictures never stop training: a failure is a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from seq2seq.inference import decode_ids
from seq2seq.plots.attention import attention_figure
from seq2seq.plots.curves import write_curves
from seq2seq.training.metrics_log import append_metrics

log = logging.getLogger("seq2seq.train")
ATTENTION_SAMPLES = 3  # validation sentences drawn into TensorBoard at each validation


class RunReports:
    """Appends metrics, redraws curves.png after each validation, feeds TensorBoard."""

    def __init__(self, out_dir: Path, tensorboard: bool = False, start_step: int = 0) -> None:
        self.out_dir = out_dir
        self.drawn = True  # curves.png shows every record so far
        self.board: Any = None
        if tensorboard:
            from seq2seq.plots.tensorboard import TensorBoardLog

            self.board = TensorBoardLog(out_dir, start_step)

    def record(self, record: dict[str, Any]) -> None:
        """Append one metrics record (a training window or a validation)."""
        append_metrics(self.out_dir, record)
        self.drawn = False
        if self.board is not None:
            self._safely("TensorBoard scalars", lambda: self.board.scalars(record))

    def validated(self, trainer: Any) -> None:
        """After a validation: redraw curves.png; attention images to TensorBoard."""
        self.refresh_curves()
        if self.board is not None and trainer.data.valid is not None:
            step = trainer.state.step
            self._safely(
                "TensorBoard attention images",
                lambda: self.board.figures("attention", sample_attention(trainer), step),
            )
            self._safely("TensorBoard", self.board.flush)

    def refresh_curves(self) -> None:
        """Redraw RUN_DIR/curves.png when records came since the last drawing."""
        if not self.drawn:
            self.drawn = True
            self._safely("curves.png", lambda: write_curves(self.out_dir))

    def close(self) -> None:
        """Final curves and TensorBoard flush."""
        self.refresh_curves()
        if self.board is not None:
            self._safely("TensorBoard", self.board.close)

    @staticmethod
    def _safely(what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # a picture is never worth a training run
            log.warning("could not write %s: %s: %s", what, type(exc).__name__, exc)


class SilentReports(RunReports):
    """What ranks other than 0 use: rank 0 alone writes metrics and pictures."""

    def __init__(self) -> None:
        self.board = None

    def record(self, record: dict[str, Any]) -> None:
        """Nothing to write."""

    def validated(self, trainer: Any) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to close."""


def sample_attention(trainer: Any, count: int = ATTENTION_SAMPLES) -> list[Figure]:
    """Attention maps of the first `count` validation sentences under the validation search."""
    valid = trainer.data.valid
    sources = valid.source[:count]
    hyps = decode_ids(trainer.model, trainer.search, sources, keep_attention=True)
    src_tok, tgt_tok = trainer.data.tokenizers["source"], trainer.data.tokenizers["target"]
    figures = []
    for number, (ids, options) in enumerate(zip(sources, hyps, strict=True), 1):
        weights = options[0].attention if options else None
        if weights is None:  # a search or model without attention
            continue
        target = [*tgt_tok.pieces(options[0].tokens), "</s>"]
        source = src_tok.pieces(ids)
        heads = options[0].head_attention
        figures.append(attention_figure(source, target, weights, heads, f"valid {number}"))
    return figures
