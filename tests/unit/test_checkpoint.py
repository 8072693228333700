"""Checkpoints: round trip, tied weights, atomic pointers, pruning, refusing unsafe pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq.errors import BundleError
from seq2seq.training import checkpoint as ckpt


class Tied(nn.Module):
    """A tiny model with one shared matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5)
        self.out.weight = self.embed.weight


def test_round_trip_with_tied_weights(tmp_path: Path) -> None:
    """Weights come back equal and still tied; trainer state loads with weights_only."""
    model = Tied()
    state = {"loop": {"step": 7}, "rng": torch.get_rng_state()}
    directory = ckpt.save_checkpoint(tmp_path, 7, model, state, keep=2)
    other = Tied()
    meta = ckpt.load_weights(other, directory / ckpt.WEIGHTS)
    assert meta["step"] == "7"
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert other.out.weight is other.embed.weight
    assert ckpt.load_trainer_state(directory)["loop"]["step"] == 7


def test_pointers_and_pruning_keep_best(tmp_path: Path) -> None:
    """latest.json follows the newest save; old dirs go, but never the best one."""
    model = Tied()
    ckpt.save_checkpoint(tmp_path, 1, model, {}, keep=1, best={"metric": "loss", "value": 1.0})
    for step in (2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, model, {}, keep=1)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-00000001", "step-00000004"]
    assert ckpt.checkpoint_dir(tmp_path, "latest").name == "step-00000004"
    assert ckpt.checkpoint_dir(tmp_path, "best").name == "step-00000001"


def test_no_temporary_files_left(tmp_path: Path) -> None:
    """Nothing with a temporary name survives a save."""
    ckpt.save_checkpoint(tmp_path, 1, Tied(), {"x": 1}, keep=2)
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """An error while writing leaves the previous checkpoint as latest, loadable."""
    model = Tied()
    ckpt.save_checkpoint(tmp_path, 1, model, {"n": 1}, keep=2)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "weights_bytes", broken)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save_checkpoint(tmp_path, 2, model, {"n": 2}, keep=2)
    latest = ckpt.checkpoint_dir(tmp_path, "latest")
    assert latest.name == "step-00000001"
    ckpt.load_weights(Tied(), latest / ckpt.WEIGHTS)
    assert not any(".tmp" in p.name for p in (tmp_path / "checkpoints").iterdir())


class Boom:
    """Unpickling this would run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_a_planted_pickle(tmp_path: Path) -> None:
    """A trainer.pt holding arbitrary objects is refused, and nothing runs."""
    directory = ckpt.save_checkpoint(tmp_path, 1, Tied(), {}, keep=1)
    with open(directory / ckpt.TRAINER, "wb") as handle:
        pickle.dump({"evil": Boom()}, handle)
    with pytest.raises(BundleError, match="refusing to load"):
        ckpt.load_trainer_state(directory)


def test_truncated_weights_are_named(tmp_path: Path) -> None:
    """A cut-off safetensors file names the file."""
    directory = ckpt.save_checkpoint(tmp_path, 1, Tied(), {}, keep=1)
    path = directory / ckpt.WEIGHTS
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BundleError, match="damaged or truncated"):
        ckpt.load_weights(Tied(), path)


def test_weights_of_another_model_are_rejected(tmp_path: Path) -> None:
    """Loading weights into a different architecture says so."""
    directory = ckpt.save_checkpoint(tmp_path, 1, Tied(), {}, keep=1)
    with pytest.raises(BundleError, match="does not fit the model"):
        ckpt.load_weights(nn.Linear(3, 3), directory / ckpt.WEIGHTS)


def test_corrupt_pointer_falls_back_to_newest_step(tmp_path: Path) -> None:
    """A damaged latest.json does not hide existing checkpoints."""
    ckpt.save_checkpoint(tmp_path, 5, Tied(), {}, keep=2)
    (tmp_path / "checkpoints" / "latest.json").write_text("{not json")
    assert ckpt.checkpoint_dir(tmp_path, "latest").name == "step-00000005"


class Killed(BaseException):
    """Stands for a SIGKILL at one instant."""


def test_saving_a_step_again_never_leaves_it_missing(tmp_path: Path, monkeypatch) -> None:
    """Saving step N when step N exists (latest.json points at it): a kill while the old copy
    is deleted leaves step N loadable. The old copy used to be deleted before the new one was
    renamed into place, so such a kill left latest.json pointing at nothing."""
    model = Tied()
    ckpt.save_checkpoint(tmp_path, 5, model, {"loop": {"step": 5}}, keep=1)
    real_rmtree = ckpt.shutil.rmtree

    def killed_while_deleting_the_old_copy(path, *args, **kwargs):
        if str(path).endswith("-old"):
            raise Killed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed_while_deleting_the_old_copy)
    with pytest.raises(Killed):
        ckpt.save_checkpoint(tmp_path, 5, model, {"loop": {"step": 5, "again": True}}, keep=1)
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)
    directory = ckpt.checkpoint_dir(tmp_path, "latest")
    assert directory is not None and directory.name == "step-00000005"
    ckpt.load_weights(Tied(), directory / ckpt.WEIGHTS)
    assert ckpt.load_trainer_state(directory)["loop"] == {"step": 5, "again": True}
    ckpt.save_checkpoint(tmp_path, 6, model, {"loop": {"step": 6}}, keep=1)  # tidies up
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if ".tmp" in p.name] == []
