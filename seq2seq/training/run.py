"""train(recipe, out_dir): set up a run (or resume one) and drive the loop: epochs → batches →
update, validating and checkpointing every N steps."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from seq2seq.assemble import count_parameters
from seq2seq.bundle import load_tokenizers, read_bundle_meta, write_bundle
from seq2seq.device import pick_device
from seq2seq.errors import InterruptedRun, Problem, RecipeError, Seq2SeqError, StorageError
from seq2seq.plots.tensorboard import summary_writer_class
from seq2seq.recipe import Recipe, TrainConfig, apply_overrides, parse_recipe
from seq2seq.training import checkpoint as ckpt
from seq2seq.training import distributed
from seq2seq.training.feed import updates
from seq2seq.training.metrics_log import trim_metrics
from seq2seq.training.prepare import prepare
from seq2seq.training.progress import Progress, SilentProgress
from seq2seq.training.reports import RunReports, SilentReports
from seq2seq.training.signals import GracefulStop
from seq2seq.training.trainer import StepStats, Trainer

log = logging.getLogger("seq2seq.train")

# What a run fixes for good: the network and the tokenizer its weights were trained with.
FIXED_KEYS = ("model.", "data.tokenizer", "data.joint_vocab")
FIXED_ON_RESUME = (
    "fixed by the run being resumed (the weights and tokenizer depend on it); "
    "start a new run to change it"
)


def check_out_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite another run, and to resume something that is not a run."""
    if resume:
        meta = read_bundle_meta(out_dir)
        if "export" in meta:  # training it would overwrite its bundle.json: the export is lost
            source = meta["export"].get("source") if isinstance(meta["export"], dict) else None
            origin = source.get("run_dir") if isinstance(source, dict) else None
            raise Seq2SeqError(
                f"{out_dir} is an export dir (seq2seq export), which cannot be trained; "
                f"resume the run it was exported from ({origin or 'its training run dir'})"
            )
    elif (out_dir / "bundle.json").exists():
        raise Seq2SeqError(
            f"{out_dir} already holds a run; add --resume to continue it, or choose another --out"
        )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise Seq2SeqError(f"--out {out_dir} exists and is not empty; choose another --out")


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
    """Train (or resume) a run in `out_dir`, alone or as one rank of a torchrun job."""
    if not distributed.launched_by_torchrun():
        return _train(recipe, Path(out_dir), pick_device(device), resume, overrides)
    timeout = recipe.train.dist_timeout if recipe is not None else 30.0
    group = distributed.join(pick_device(device), timeout)
    if not group.main:  # rank 0 tells the story; the others speak only of problems
        logging.getLogger("seq2seq").setLevel(logging.WARNING)
    try:
        run_dir = _train(recipe, Path(out_dir), group.device, resume, overrides, group)
        # the ranks leave together: rank 0 still draws its curves and closes its reports after
        # the last checkpoint's barrier, and a rank that tore its group down and exited in that
        # time once aborted in Gloo at exit. Only on this path: after an error a barrier could
        # wait out dist_timeout for a rank that is not coming
        group.barrier()
        return run_dir
    except Exception as exc:
        if not distributed.is_peer_failure(exc):
            raise
        # the cause is another rank's failure: give torchrun time to see and report that one
        time.sleep(distributed.PEER_GRACE)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise distributed.PeerLost(f"lost contact with the other processes ({first})") from exc
    finally:
        distributed.leave(group)


def _train(
    recipe: Recipe | None,
    out: Path,
    device: torch.device,
    resume: bool,
    overrides: tuple[str, ...],
    group: distributed.Group | None = None,
) -> Path:
    group = group or distributed.Group(device=device)
    if group.main:  # the others would race with rank 0 creating the dir
        check_out_dir(out, resume)
    tokenizers = None
    saved_lr = None
    if resume:  # every rank reads the run dir: it must be on storage they all see
        meta = read_bundle_meta(out)
        data = meta["recipe"]
        saved_lr = float(data["train"]["lr"])
        problems = [Problem(o, FIXED_ON_RESUME) for o in overrides if o.startswith(FIXED_KEYS)]
        problems += apply_overrides(data, overrides)
        if problems:
            raise RecipeError("the overrides", problems)
        recipe = parse_recipe(data, f"{out}/bundle.json (recipe)")
        tokenizers = load_tokenizers(out, meta, recipe)
    assert recipe is not None
    if recipe.train.tensorboard:  # fail before the data is read, not at the first log line
        summary_writer_class()
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed_everything(recipe.seed)
    data = prepare(recipe, tokenizers, group)
    trainer = Trainer(recipe, out, device, data, group)  # the same initial weights on every rank
    if group.rank:  # different dropout on every rank
        seed_everything(recipe.seed + 7919 * group.rank)
    if resume:
        directory = ckpt.checkpoint_dir(out, "latest")
        if directory is not None:
            trainer.restore(directory)
            log.info("resuming from %s (step %d)", directory.name, trainer.state.step)
            if group.main:
                trim_metrics(out, trainer.state.step)
            if saved_lr is not None and recipe.train.lr != saved_lr:
                trainer.rescale_lr(recipe.train.lr / saved_lr)
            if trainer.state.stopped_early:  # resuming asks for more training: patience restarts
                log.info("the run had stopped early; early stopping starts counting again")
                trainer.state.stopped_early = False
                trainer.state.bad_validations = 0
    if group.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_bundle(out, recipe, data.tokenizers)
        except OSError as exc:
            raise StorageError(f"cannot write the run dir {out}: {exc.strerror or exc}") from exc
        log.info(
            "model: %s parameters; %s training pairs; device %s; %d process%s",
            f"{count_parameters(trainer.model):,}",
            "streamed" if data.train is None else f"{len(data.train):,}",
            trainer.device,
            group.world,
            "es" if group.world > 1 else "",
        )
    run_loop(trainer)
    return out


def run_loop(trainer: Trainer) -> None:
    """Epochs → batches → update; validate and checkpoint every N steps; stop on budget."""
    cfg = trainer.recipe.train
    state = trainer.state
    total = trainer.total_steps()
    main = trainer.group.main
    progress = Progress(total, state.step, cfg.log_every) if main else SilentProgress()
    reports = RunReports(trainer.out_dir, cfg.tensorboard, state.step) if main else SilentReports()
    started = time.perf_counter()
    with GracefulStop() as stop:
        try:
            _epochs(trainer, progress, reports, stop, started)
        finally:
            progress.close()
            reports.close()
    minutes = (time.perf_counter() - started) / 60
    progress.message(f"done: {state.step} steps in {minutes:.1f} min; run dir {trainer.out_dir}")


def _epochs(
    trainer: Trainer, progress: Progress, reports: RunReports, stop: GracefulStop, started: float
) -> None:
    """Run epochs from the saved position until the epochs, the budget or patience run out."""
    cfg, state = trainer.recipe.train, trainer.state
    if state.epoch >= cfg.max_epochs or out_of_budget(cfg, state.step, started):
        log.info(  # a resumed run that had finished: nothing to add, nothing to save again
            "the run has used its budget at step %d (train.max_steps, train.max_epochs); "
            "raise one to train on",
            state.step,
        )
        return
    per_update = trainer.group.world * cfg.accumulate
    while state.epoch < cfg.max_epochs and not state.stopped_early:
        batches = trainer.data.feed.epoch(state.epoch, state.batch_in_epoch)
        for group in updates(batches, per_update):
            stats = trainer.train_step(group)
            state.batch_in_epoch += len(group)  # global batches: the position is the same
            state.step += 1  # whatever the number of processes
            if _after_step(trainer, progress, reports, stop, stats, started):
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
            continue
        break
    every = cfg.validation.every
    if every <= 0 or state.step % every:
        checkpoint_and_validate(trainer, progress, reports)


def _after_step(
    trainer: Trainer,
    progress: Progress,
    reports: RunReports,
    stop: GracefulStop,
    stats: StepStats,
    started: float,
) -> bool:
    """Log, handle faults and stop requests, validate when due; True when training should end."""
    cfg, state = trainer.recipe.train, trainer.state
    distributed.inject_fault(trainer.group, state.step)
    lr = trainer.optimizer.param_groups[0]["lr"]
    window = progress.update(state.step, stats.loss, stats.tokens, stats.grad_norm, lr)
    if window is not None:
        record = {"step": state.step, "split": "train", **window}
        reports.record({**record, "nonfinite": state.nonfinite_total})
    if state.nonfinite_in_a_row >= cfg.max_nonfinite:
        trainer.save()
        raise Seq2SeqError(
            f"{state.nonfinite_in_a_row} non-finite losses or gradients in a row at step "
            f"{state.step}; lower train.lr or set train.clip_grad_norm (last good checkpoint saved)"
        )
    # every rank must stop at the same step: a signal or the clock may reach them apart
    stopping, over = trainer.group.any(
        stop.requested is not None, out_of_budget(cfg, state.step, started)
    )
    if stopping:
        trainer.save()
        nproc = f"--nproc {trainer.group.world} " if trainer.group.world > 1 else ""
        raise InterruptedRun(
            f"{stop.requested or 'stop requested on another rank'}: stopped at step "
            f"{state.step}; checkpoint saved; continue with: seq2seq train {nproc}--resume "
            f"{trainer.out_dir}"
        )
    if cfg.validation.every > 0 and state.step % cfg.validation.every == 0:
        checkpoint_and_validate(trainer, progress, reports)
    return state.stopped_early or over


def out_of_budget(cfg: TrainConfig, step: int, started: float) -> bool:
    """True once max_steps or max_minutes is reached."""
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return True
    elapsed = (time.perf_counter() - started) / 60
    return cfg.max_minutes is not None and elapsed >= cfg.max_minutes


def checkpoint_and_validate(trainer: Trainer, progress: Progress, reports: RunReports) -> None:
    """Validate (when there is validation data), log, save a checkpoint, redraw the curves."""
    best = None
    if trainer.data.valid is not None:
        # rank 0 validates; every rank applies its results, so early stopping and the schedule
        # decide the same everywhere
        results = trainer.group.broadcast(trainer.validate() if trainer.group.main else {})
        best = trainer.after_validation(results)
        reports.record({"step": trainer.state.step, "split": "valid", **results})
        shown = "  ".join(f"{k} {v:.3f}" for k, v in results.items())
        mark = "  (best)" if best else ""
        progress.message(f"validation at step {trainer.state.step}: {shown}{mark}")
        if trainer.state.stopped_early:
            progress.message(
                f"early stopping: no improvement for {trainer.state.bad_validations} validations"
            )
    trainer.save(best)
    reports.validated(trainer)
