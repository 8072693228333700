"""The Trainer: model, optimizer and data of one run, one update at a time, validation."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import registry
from seq2seq.data.batching import make_batch, token_batches
from seq2seq.errors import BundleError
from seq2seq.metrics.score import metric_names
from seq2seq.model import Seq2Seq, build_model
from seq2seq.recipe import LOSS_METRICS, Recipe, TrainConfig
from seq2seq.training import checkpoint as ckpt
from seq2seq.training.evaluate import decode_and_score, validation_loss
from seq2seq.training.loss import sequence_loss
from seq2seq.training.prepare import Prepared

log = logging.getLogger("seq2seq.train")


@dataclass
class StepStats:
    """What one update reports."""

    loss: float  # mean per target token
    tokens: int  # real target tokens
    grad_norm: float  # global gradient norm before clipping


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint so a run can resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already done
    best_value: float | None = None
    bad_validations: int = 0
    nonfinite_in_a_row: int = 0
    nonfinite_total: int = 0
    stopped_early: bool = False


class Trainer:
    """Holds the model, optimizer and data of one run and drives the loop."""

    def __init__(self, recipe: Recipe, out_dir: Path, device: torch.device, data: Prepared) -> None:
        self.recipe, self.out_dir, self.device, self.data = recipe, out_dir, device, data
        train_cfg = recipe.train
        tok = data.tokenizers
        self.model: Seq2Seq = build_model(
            recipe.model, tok["source"].vocab_size, tok["target"].vocab_size
        ).to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = registry.build(
            "optimizer",
            train_cfg.optimizer,
            where="train.optimizer",
            params=params,
            lr=train_cfg.lr,
        )
        self.schedule = registry.build(
            "scheduler", train_cfg.scheduler, where="train.scheduler", optimizer=self.optimizer
        )
        self.search = registry.build(
            "search", train_cfg.validation.search, where="train.validation.search"
        )
        self.state = LoopState()
        select = train_cfg.validation.select
        self.higher_is_better = metric_direction(recipe, select)
        self.src_len = [len(s) for s in data.train.source]
        self.tgt_len = [len(t) for t in data.train.target]

    def total_steps(self) -> int:
        """Expected number of updates (for the ETA): epochs × batches, capped by max_steps."""
        cfg = self.recipe.train
        per_epoch = len(token_batches(self.src_len, self.tgt_len, cfg.batch_tokens, 0, 0))
        total = per_epoch * cfg.max_epochs
        return min(total, cfg.max_steps) if cfg.max_steps is not None else total

    # ------------------------------------------------------------------ state

    def trainer_state(self) -> dict[str, Any]:
        """Optimizer, schedule, RNG and loop state, as plain data and tensors."""
        state = {
            "loop": asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_python": list(random.getstate()[1]),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, directory: Path) -> None:
        """Continue from a checkpoint directory."""
        ckpt.load_weights(self.model, directory / ckpt.WEIGHTS)
        saved = ckpt.load_trainer_state(directory)
        try:
            self.state = LoopState(**saved["loop"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.schedule.load_state_dict(saved["schedule"])
            torch.set_rng_state(saved["rng_torch"])
            random.setstate((3, tuple(saved["rng_python"]), None))
            if "rng_cuda" in saved and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng_cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise BundleError(f"cannot resume from {directory}: {exc}") from exc

    def rescale_lr(self, factor: float) -> None:
        """Scale the learning rate everywhere it is kept (train.lr changed on resume)."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        base = getattr(self.schedule.scheduler, "base_lrs", None)
        if base is not None:
            self.schedule.scheduler.base_lrs = [lr * factor for lr in base]

    def save(self, best: dict[str, Any] | None = None) -> None:
        """Checkpoint the current step; a failed write stops training with the old one intact."""
        try:
            ckpt.save_checkpoint(
                self.out_dir,
                self.state.step,
                self.model,
                self.trainer_state(),
                self.recipe.train.keep_checkpoints,
                best,
            )
        except OSError as exc:
            raise ckpt.save_failed(self.out_dir, self.state.step, exc) from exc

    # ------------------------------------------------------------------ steps

    def train_step(self, indices: list[int]) -> StepStats:
        """One update on one batch."""
        cfg = self.recipe.train
        batch = make_batch(self.data.train.source, self.data.train.target, indices).to(self.device)
        assert batch.tgt_in is not None and batch.tgt_out is not None
        self.model.train()
        coverage = cfg.coverage_loss
        use_coverage = coverage is not None and self.state.step >= coverage.start_step
        output = self.model.run(
            batch.src,
            batch.src_lengths,
            batch.tgt_in,
            teacher_ratio(cfg, self.state.step),
            use_coverage,
        )
        total, count = sequence_loss(
            output.scores, batch.tgt_out, label_smoothing=cfg.label_smoothing
        )
        if use_coverage and output.coverage_loss is not None:
            assert coverage is not None
            real = (batch.tgt_out != self.model.specials.pad).to(output.coverage_loss.dtype)
            total = total + coverage.weight * (output.coverage_loss * real).sum()
        loss = total / count.clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = cfg.clip_grad_norm if cfg.clip_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)
        value = float(loss.detach())
        if not (math.isfinite(value) and math.isfinite(float(norm))):
            self.state.nonfinite_in_a_row += 1
            self.state.nonfinite_total += 1
            log.warning("step %d: non-finite loss or gradient; update skipped", self.state.step)
            return StepStats(value, int(count), float(norm))
        self.state.nonfinite_in_a_row = 0
        self.optimizer.step()
        self.schedule.after_update()
        return StepStats(value, int(count), float(norm))

    def validate(self) -> dict[str, float]:
        """Loss, perplexity and decoded metrics on (a subset of) the validation data."""
        assert self.data.valid is not None
        cfg = self.recipe.train.validation
        loss, ppl = validation_loss(self.model, self.data.valid, self.recipe.train.batch_tokens)
        results = {"loss": loss, "ppl": ppl}
        metrics = self.recipe.metrics
        if cfg.select not in LOSS_METRICS or cfg.subset != 0:
            n = (
                len(self.data.valid)
                if cfg.subset is None
                else min(cfg.subset, len(self.data.valid))
            )
            _, scores = decode_and_score(
                self.model,
                self.search,
                self.data.valid.source[:n],
                self.data.valid_refs[:n],
                self.data.tokenizers["target"],
                metrics,
                cfg.batch_size,
            )
            for spec, s in zip(metric_names(metrics), scores, strict=True):
                results[spec] = s.value
        return results

    def after_validation(self, results: dict[str, float]) -> dict[str, Any] | None:
        """Update early stopping and the schedule; return best-pointer info if this is the best."""
        select = self.recipe.train.validation.select
        value = results[select]
        self.schedule.after_validation(value, self.higher_is_better)
        best = self.state.best_value
        improved = best is None or (value > best if self.higher_is_better else value < best)
        if improved:
            self.state.best_value, self.state.bad_validations = value, 0
            return {"metric": select, "value": value}
        self.state.bad_validations += 1
        stopping = self.recipe.train.early_stopping
        if stopping is not None and self.state.bad_validations >= stopping.patience:
            self.state.stopped_early = True
        return None


def metric_direction(recipe: Recipe, name: str) -> bool:
    """Whether a larger value of the selection metric is better (loss and ppl: no; TER: no)."""
    if name in LOSS_METRICS:
        return LOSS_METRICS[name]
    spec = next(m for m in recipe.metrics if registry.split_spec(m)[0] == name)
    return bool(registry.build("metric", spec, where="metrics").higher_is_better)


def teacher_ratio(cfg: TrainConfig, step: int) -> float:
    """The teacher-forcing ratio at `step`."""
    forcing = cfg.teacher_forcing
    return forcing if isinstance(forcing, float) else forcing.ratio(step)
