"""Checkpoints: atomic writes, safetensors weights, trainer state loaded without unpickling code.

Layout inside a run dir::

    checkpoints/step-00001000/model.safetensors   weights (+ JSON metadata in the header)
    checkpoints/step-00001000/trainer.pt          optimizer, schedule, RNG and loop state
    checkpoints/latest.json                       {"dir": "step-00001000", "step": 1000}
    checkpoints/best.json                         {"dir", "step", "metric", "value"}

A step directory is written under a temporary name and renamed when complete, and the pointer
files are replaced atomically, so a kill at any moment leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from seq2seq.errors import BundleError, StorageError

CHECKPOINTS = "checkpoints"
WEIGHTS = "model.safetensors"
TRAINER = "trainer.pt"


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def weights_bytes(model: nn.Module, metadata: dict[str, str]) -> bytes:
    """Safetensors bytes of the model; tied parameters are stored once and listed as aliases."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    tensors, aliases = {}, {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().contiguous().cpu()
    meta = {**metadata, "aliases": json.dumps(aliases)}
    return save_safetensors(tensors, metadata=meta)


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Load safetensors weights into `model`; return the header metadata."""
    if not path.is_file():
        raise BundleError(f"weights file {path} is missing")
    data = path.read_bytes()
    try:
        tensors = load_safetensors(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"weights file {path} is damaged or truncated: {exc}") from exc
    for name, source in json.loads(metadata.get("aliases", "{}")).items():
        tensors[name] = tensors[source]
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # tensor sizes differ from the model the recipe builds
        first = str(exc).strip().splitlines()[-1].strip()
        raise BundleError(
            f"weights file {path} does not fit the model built from the recipe: {first}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise BundleError(
            f"weights file {path} does not fit the model built from the recipe "
            f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]})"
        )
    return dict(metadata)


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    trainer_state: dict[str, Any],
    keep: int,
    best: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step`, point latest.json (and best.json if given) at it, prune old ones."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    remove_temporaries(root)
    tmp = root / f".{name}.tmp-{os.getpid()}"
    replaced = None  # the earlier copy of this step, when the same step is saved again
    tmp.mkdir()
    try:
        atomic_write(tmp / WEIGHTS, weights_bytes(model, {"step": str(step)}))
        buffer = io.BytesIO()
        torch.save(trainer_state, buffer)
        atomic_write(tmp / TRAINER, buffer.getvalue())
        if final.exists():  # re-saving a step (e.g. resuming a run that had finished its epochs)
            replaced = root / f".{name}.tmp-{os.getpid()}-old"
            os.rename(final, replaced)
        os.rename(tmp, final)  # right after the first rename: the pointers' step is gone briefly
    except BaseException:
        if replaced is not None and not final.exists():
            os.rename(replaced, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)
    if replaced is not None:  # deleted only once the new copy is in place
        shutil.rmtree(replaced, ignore_errors=True)
    atomic_write(root / "latest.json", json.dumps({"dir": name, "step": step}).encode())
    if best is not None:
        atomic_write(root / "best.json", json.dumps({"dir": name, "step": step, **best}).encode())
    prune(root, keep)
    return final


def remove_temporaries(root: Path) -> None:
    """Delete what an interrupted save left behind (only one process writes checkpoints)."""
    for leftover in root.glob(".*.tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def save_failed(run_dir: Path, step: int, exc: OSError) -> StorageError:
    """The error for a checkpoint that could not be written, saying what is still safe."""
    previous = read_pointer(run_dir, "latest")
    kept = (
        f"the previous checkpoint ({previous['dir']}) is intact"
        if previous
        else "there is no earlier checkpoint"
    )
    return StorageError(
        f"could not save the checkpoint of step {step} in {run_dir / CHECKPOINTS}: "
        f"{exc.strerror or exc}; {kept}. Free disk space or fix the permissions, then "
        f"continue with: seq2seq train --resume {run_dir}"
    )


def read_pointer(run_dir: Path, which: str) -> dict[str, Any] | None:
    """The content of latest.json or best.json, or None when absent or unreadable."""
    try:
        pointer = json.loads((run_dir / CHECKPOINTS / f"{which}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(pointer, dict)
        or not (run_dir / CHECKPOINTS / str(pointer.get("dir"))).is_dir()
    ):
        return None
    return pointer


def checkpoint_dir(run_dir: Path, which: str = "best") -> Path | None:
    """The best (else latest) or the latest checkpoint directory; None when there is none."""
    order = ["best", "latest"] if which == "best" else ["latest"]
    for name in order:
        pointer = read_pointer(run_dir, name)
        if pointer is not None:
            return run_dir / CHECKPOINTS / pointer["dir"]
    steps = (
        sorted((run_dir / CHECKPOINTS).glob("step-*")) if (run_dir / CHECKPOINTS).is_dir() else []
    )
    return steps[-1] if steps else None


def prune(root: Path, keep: int) -> None:
    """Remove all but the `keep` newest step checkpoints, never the best one."""
    best = read_pointer(root.parent, "best")
    protected = {best["dir"]} if best else set()
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(keep, 1))]:
        if old.name not in protected:
            discard(old)


def discard(directory: Path) -> None:
    """Delete a step directory so that a kill midway never leaves half a checkpoint under a
    step name: rename it to a temporary name first (atomic), then delete that."""
    doomed = directory.with_name(f".{directory.name}.tmp-{os.getpid()}-old")
    os.rename(directory, doomed)
    fsync_dir(directory.parent)
    shutil.rmtree(doomed, ignore_errors=True)


def load_trainer_state(directory: Path) -> dict[str, Any]:
    """Trainer state saved by `save_checkpoint`, loaded with weights_only=True (no code runs)."""
    path = directory / TRAINER
    if not path.is_file():
        raise BundleError(f"trainer state {path} is missing; cannot resume from this checkpoint")
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol is refused below anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BundleError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, "
            "which could run code; it was not written by seq2seq"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise BundleError(f"trainer state {path} is damaged or truncated: {exc}") from exc
    if not isinstance(state, dict):
        raise BundleError(f"trainer state {path} is not a seq2seq trainer state")
    return state
