"""The Trainer: model, optimizer and data of one run, one update at a time, validation."""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import registry
from seq2seq.assemble import build_model
from seq2seq.data.batching import Batch, make_batch
from seq2seq.errors import BundleError
from seq2seq.metrics.score import metric_names
from seq2seq.model import Seq2Seq
from seq2seq.recipe import LOSS_METRICS, Recipe
from seq2seq.training import checkpoint as ckpt
from seq2seq.training.distributed import Group
from seq2seq.training.evaluate import decode_and_score, validation_loss
from seq2seq.training.feed import Pairs, share
from seq2seq.training.prepare import Prepared
from seq2seq.training.update import StepStats, Updater, teacher_ratio

__all__ = ["LoopState", "StepStats", "Trainer", "metric_direction", "teacher_ratio"]

log = logging.getLogger("seq2seq.train")


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

    def __init__(
        self, recipe: Recipe, out_dir: Path, device: torch.device, data: Prepared, group: Group
    ) -> None:
        self.recipe, self.out_dir, self.device, self.data = recipe, out_dir, device, data
        self.group = group
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
        self.updater = Updater(self.model, self.optimizer, self.schedule, train_cfg, group)

    def total_steps(self) -> int | None:
        """Expected number of updates (for the ETA): epochs × updates, capped by max_steps."""
        cfg = self.recipe.train
        batches = self.data.feed.batches_per_epoch()
        if batches is None:  # streaming: only max_steps is known
            return cfg.max_steps
        total = -(-batches // (self.group.world * cfg.accumulate)) * cfg.max_epochs
        return min(total, cfg.max_steps) if cfg.max_steps is not None else total

    # ------------------------------------------------------------------ state

    def trainer_state(self) -> dict[str, Any]:
        """Optimizer, schedule, RNG and loop state, as plain data and tensors (collective)."""
        ranks = self.group.gather(rng_state())  # every rank's generators: dropout differs by rank
        state = {
            "loop": asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng_torch": ranks[0]["torch"],
            "rng_python": ranks[0]["python"],
            "rng_ranks": ranks,
        }
        if self.updater.scaler.is_enabled():
            state["scaler"] = self.updater.scaler.state_dict()
        return state

    def restore(self, directory: Path) -> None:
        """Continue from a checkpoint directory."""
        ckpt.load_weights(self.model, directory / ckpt.WEIGHTS)
        saved = ckpt.load_trainer_state(directory)
        try:
            self.state = LoopState(**saved["loop"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.schedule.load_state_dict(saved["schedule"])
            if self.updater.scaler.is_enabled() and "scaler" in saved:
                self.updater.scaler.load_state_dict(saved["scaler"])
            ranks = saved.get("rng_ranks") or [{"torch": saved["rng_torch"]}]
            if len(ranks) == self.group.world or self.group.main:  # else: a new rank, own seed
                set_rng_state(ranks[self.group.rank], saved.get("rng_python"))
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
        """Checkpoint the current step (collective: every rank calls it, rank 0 writes); a
        failed write stops training with the old checkpoint intact."""
        state = self.trainer_state()
        if self.group.main:
            try:
                ckpt.save_checkpoint(
                    self.out_dir,
                    self.state.step,
                    self.model,
                    state,
                    self.recipe.train.keep_checkpoints,
                    best,
                )
            except OSError as exc:
                raise ckpt.save_failed(self.out_dir, self.state.step, exc) from exc
        self.group.barrier()  # no rank leaves (e.g. on a stop) before the checkpoint is written

    # ------------------------------------------------------------------ steps

    def train_step(self, batches: list[Any]) -> StepStats:
        """One update on a group of global batches: this rank's share, gradients of all."""
        feed = self.data.feed
        tokens = sum(feed.tokens(b) for b in batches)
        mine = share(batches, self.group.rank, self.group.world)
        micro = [(self._to_device(feed.load(b)), w) for b, w in mine]
        stats = self.updater.update(micro, tokens, self.state.step)
        if stats.finite:
            self.state.nonfinite_in_a_row = 0
        else:
            self.state.nonfinite_in_a_row += 1
            self.state.nonfinite_total += 1
            log.warning("step %d: non-finite loss or gradient; update skipped", self.state.step)
        return stats

    def _to_device(self, pairs: Pairs) -> Batch:
        source, target = pairs
        batch = make_batch(source, target, list(range(len(source))))
        if self.device.type == "cuda":  # page-locked memory lets the copy overlap compute
            batch = batch.pin_memory()
        return batch.to(self.device)

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


def rng_state() -> dict[str, Any]:
    """This process's random generators (torch CPU and CUDA, Python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], python: list[int] | None = None) -> None:
    """Restore generators saved by `rng_state` (older checkpoints kept Python's apart)."""
    torch.set_rng_state(state["torch"])
    saved = state.get("python", python)
    if saved is not None:
        random.setstate((3, tuple(saved), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
