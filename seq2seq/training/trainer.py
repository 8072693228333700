"""train(recipe, out_dir): the one explicit training loop, with validation and checkpoints."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import registry
from seq2seq.bundle import load_tokenizers, read_bundle_meta, write_bundle
from seq2seq.data.batching import make_batch, token_batches
from seq2seq.errors import BundleError, RecipeError, Seq2SeqError
from seq2seq.metrics.score import metric_names
from seq2seq.model import Seq2Seq, Specials, build_model, count_parameters
from seq2seq.recipe import LOSS_METRICS, Recipe, TrainConfig, apply_overrides, parse_recipe
from seq2seq.training import checkpoint as ckpt
from seq2seq.training.evaluate import decode_and_score, validation_loss
from seq2seq.training.loss import sequence_loss
from seq2seq.training.prepare import Prepared, prepare
from seq2seq.training.progress import Progress

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


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; an unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Seq2SeqError(f"--device {name}: CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise Seq2SeqError(f"--device {name}: {exc}") from exc


def check_out_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite another run, and to resume something that is not a run."""
    if resume:
        read_bundle_meta(out_dir)
    elif (out_dir / "bundle.json").exists():
        raise Seq2SeqError(
            f"{out_dir} already holds a run; add --resume to continue it, or choose another --out"
        )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise Seq2SeqError(f"--out {out_dir} exists and is not empty; choose another --out")


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
        self.higher_is_better = LOSS_METRICS.get(select, True)
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

    def save(self, best: dict[str, Any] | None = None) -> None:
        """Checkpoint the current step."""
        ckpt.save_checkpoint(
            self.out_dir,
            self.state.step,
            self.model,
            self.trainer_state(),
            self.recipe.train.keep_checkpoints,
            best,
        )

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


def teacher_ratio(cfg: TrainConfig, step: int) -> float:
    """The teacher-forcing ratio at `step`."""
    forcing = cfg.teacher_forcing
    return forcing if isinstance(forcing, float) else forcing.ratio(step)


def _log_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) generators."""
    random.seed(seed)
    torch.manual_seed(seed)


def train(
    recipe: Recipe | None,
    out_dir: str | Path,
    *,
    device: str = "auto",
    resume: bool = False,
    overrides: tuple[str, ...] = (),
) -> Path:
    """Train (or resume) a run in `out_dir`; return the run dir."""
    out = Path(out_dir)
    check_out_dir(out, resume)
    tokenizers = None
    if resume:
        meta = read_bundle_meta(out)
        data = meta["recipe"]
        problems = apply_overrides(data, overrides)
        if problems:
            raise RecipeError("the overrides", problems)
        recipe = parse_recipe(data, f"{out}/bundle.json (recipe)")
        tokenizers = load_tokenizers(out, meta, recipe)
    assert recipe is not None
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed_everything(recipe.seed)
    data = prepare(recipe, tokenizers)
    trainer = Trainer(recipe, out, pick_device(device), data)
    if resume:
        directory = ckpt.checkpoint_dir(out, "latest")
        if directory is not None:
            trainer.restore(directory)
            log.info("resuming from %s (step %d)", directory.name, trainer.state.step)
    out.mkdir(parents=True, exist_ok=True)
    write_bundle(out, recipe, data.tokenizers)
    log.info(
        "model: %s parameters; %d training pairs; device %s",
        f"{count_parameters(trainer.model):,}",
        len(data.train),
        trainer.device,
    )
    run_loop(trainer)
    return out


def run_loop(trainer: Trainer) -> None:
    """Epochs → batches → update; validate and checkpoint every N steps; stop on budget."""
    cfg = trainer.recipe.train
    state = trainer.state
    every = cfg.validation.every
    progress = Progress(trainer.total_steps(), state.step, cfg.log_every)
    started = time.perf_counter()
    try:
        while state.epoch < cfg.max_epochs and not state.stopped_early:
            batches = token_batches(
                trainer.src_len, trainer.tgt_len, cfg.batch_tokens, trainer.recipe.seed, state.epoch
            )
            while state.batch_in_epoch < len(batches):
                stats = trainer.train_step(batches[state.batch_in_epoch])
                state.batch_in_epoch += 1
                state.step += 1
                lr = trainer.optimizer.param_groups[0]["lr"]
                window = progress.update(state.step, stats.loss, stats.tokens, stats.grad_norm, lr)
                if window is not None:
                    _log_metrics(trainer.out_dir, {"step": state.step, "split": "train", **window})
                if state.nonfinite_in_a_row >= cfg.max_nonfinite:
                    trainer.save()
                    raise Seq2SeqError(
                        f"{state.nonfinite_in_a_row} non-finite losses or gradients in a row at "
                        f"step {state.step}; lower train.lr or set train.clip_grad_norm "
                        "(last good checkpoint saved)"
                    )
                if every > 0 and state.step % every == 0:
                    checkpoint_and_validate(trainer, progress)
                if state.stopped_early or out_of_budget(cfg, state.step, started):
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
                continue
            break
        if every <= 0 or state.step % every:
            checkpoint_and_validate(trainer, progress)
    finally:
        progress.close()
    minutes = (time.perf_counter() - started) / 60
    progress.message(f"done: {state.step} steps in {minutes:.1f} min; run dir {trainer.out_dir}")


def out_of_budget(cfg: TrainConfig, step: int, started: float) -> bool:
    """True once max_steps or max_minutes is reached."""
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return True
    elapsed = (time.perf_counter() - started) / 60
    return cfg.max_minutes is not None and elapsed >= cfg.max_minutes


def checkpoint_and_validate(trainer: Trainer, progress: Progress) -> None:
    """Validate (when there is validation data), log, and save a checkpoint."""
    best = None
    if trainer.data.valid is not None:
        results = trainer.validate()
        best = trainer.after_validation(results)
        _log_metrics(trainer.out_dir, {"step": trainer.state.step, "split": "valid", **results})
        shown = "  ".join(f"{k} {v:.3f}" for k, v in results.items())
        mark = "  (best)" if best else ""
        progress.message(f"validation at step {trainer.state.step}: {shown}{mark}")
        if trainer.state.stopped_early:
            progress.message(
                f"early stopping: no improvement for {trainer.state.bad_validations} validations"
            )
    trainer.save(best)


__all__ = ["LoopState", "Specials", "Trainer", "train"]
