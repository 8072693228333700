"""Faults from outside a training run: kills at random moments, a full disk, repeated Ctrl-C,
non-finite losses (test_pipes.py has the commands' input and output)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq.assemble import build_model
from seq2seq.errors import StorageError
from seq2seq.model import Specials
from seq2seq.recipe import parse_recipe
from seq2seq.training import checkpoint as ckpt
from seq2seq.training.run import train
from tests.conftest import tiny_recipe

ENV = dict(os.environ, OMP_NUM_THREADS="1")
SEQ2SEQ = [sys.executable, "-m", "seq2seq"]


def start_training(args: list[str]) -> subprocess.Popen[str]:
    """`seq2seq train ...` as a child process, stderr captured."""
    return subprocess.Popen([*SEQ2SEQ, "train", *args], stderr=subprocess.PIPE, text=True, env=ENV)


def shell(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `command` in bash, where "$0" is this Python, with output captured."""
    return subprocess.run(
        ["bash", "-c", command, sys.executable],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def wait_for(path: Path, timeout: float = 60) -> None:
    """Block until `path` exists."""
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def every_checkpoint_loads(run_dir: Path) -> int:
    """Load each surviving checkpoint fully (weights into the model, trainer state)."""
    meta = json.loads((run_dir / "bundle.json").read_text("utf-8"))
    recipe = parse_recipe(meta["recipe"])
    sizes = meta["vocab_sizes"]
    steps = sorted((run_dir / ckpt.CHECKPOINTS).glob("step-*"))
    for directory in steps:
        model = build_model(recipe.model, sizes["source"], sizes["target"], Specials())
        ckpt.load_weights(model, directory / ckpt.WEIGHTS)
        assert ckpt.load_trainer_state(directory)["loop"]["step"] == int(directory.name[5:])
    latest = ckpt.checkpoint_dir(run_dir, "latest")
    assert latest is not None and latest in steps
    return len(steps)


def test_sigkill_at_random_moments_never_breaks_a_checkpoint(reversal_dir, tmp_path) -> None:
    """Kill -9 a run five times at random instants (a checkpoint is written every step, so
    kills land inside saves too); every surviving checkpoint loads, and the run resumed after
    the kills ends with exactly the parameters of a run never killed."""
    recipe = tiny_recipe(
        reversal_dir,
        train={"max_steps": 100000, "max_epochs": 1000, "validation": {"every": 1}},
    )
    recipe["data"]["valid"] = None  # checkpoint every step, no decoding in between
    recipe["train"]["keep_checkpoints"] = 2
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run_dir = tmp_path / "run"
    kills = int(os.environ.get("SEQ2SEQ_TEST_KILLS", "5"))  # raise it for a longer soak
    rng = random.Random(int(os.environ.get("SEQ2SEQ_TEST_KILL_SEED", "7")))
    steps_seen = []
    for attempt in range(kills):
        args = [str(path), "--out", str(run_dir)] if attempt == 0 else ["--resume", str(run_dir)]
        proc = start_training(args)
        wait_for(run_dir / "checkpoints" / "latest.json")
        previous = steps_seen[-1] if steps_seen else 0
        while (ckpt.read_pointer(run_dir, "latest") or {"step": 0})["step"] <= previous:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.02)  # wait until this process has saved once itself
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.wait(timeout=30)
        assert every_checkpoint_loads(run_dir) >= 1
        steps_seen.append(ckpt.read_pointer(run_dir, "latest")["step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]
    proc = start_training(["--resume", str(run_dir), f"train.max_steps={steps_seen[-1] + 3}"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert ckpt.read_pointer(run_dir, "latest")["step"] == steps_seen[-1] + 3
    assert not list((run_dir / "checkpoints").glob(".*tmp*")), "leftovers of killed saves"
    # the killed-and-resumed run ends bitwise where an uninterrupted run of that length ends
    whole = tmp_path / "whole"
    proc = start_training([str(path), "--out", str(whole), f"train.max_steps={steps_seen[-1] + 3}"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    resumed, uninterrupted = final_weights(run_dir), final_weights(whole)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in resumed.items():
        assert torch.equal(tensor, uninterrupted[name]), name


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of the latest checkpoint."""
    from safetensors.torch import load_file

    latest = ckpt.checkpoint_dir(run_dir, "latest")
    assert latest is not None
    return load_file(str(latest / ckpt.WEIGHTS))


def test_second_sigint_exits_at_once(reversal_dir, tmp_path) -> None:
    """The first Ctrl-C is acknowledged at once and asks for a save; a second one, sent once
    the first is acknowledged, leaves without waiting for it: code 130 (or death by SIGINT in
    the last moments of the exit), no traceback, and
    whatever checkpoints exist load (a save cut short leaves only temporary names, which the
    kill -9 test shows the next save removes). Sent together, the two signals would merge into
    one and only test the graceful stop."""
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 100000, "max_epochs": 1000})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    with log.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            [*SEQ2SEQ, "train", str(path), "--out", str(run_dir)], stderr=stderr, env=ENV
        )
        wait_for(run_dir / "metrics.jsonl")  # written inside the training loop
        proc.send_signal(signal.SIGINT)
        deadline = time.time() + 60
        while "Ctrl-C again" not in log.read_text("utf-8"):
            assert proc.poll() is None, "the run ended without acknowledging the first Ctrl-C"
            assert time.time() < deadline, "the first Ctrl-C was not acknowledged"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log.read_text("utf-8")
    # -SIGINT: it landed after the interpreter had put back the default handler, on its way out
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if (run_dir / "checkpoints" / "latest.json").exists():
        assert every_checkpoint_loads(run_dir) >= 1


def test_disk_full_during_save_keeps_the_previous_checkpoint(
    reversal_dir, tmp_path, monkeypatch
) -> None:
    """ENOSPC while writing a checkpoint: a StorageError naming the intact checkpoint, then
    the run resumes from it once there is room again."""
    recipe = parse_recipe(
        tiny_recipe(reversal_dir, train={"max_steps": 6, "validation": {"every": 2}})
    )
    real_write = ckpt.atomic_write

    def full_at_step_4(path: Path, data: bytes) -> None:
        if ".step-00000004" in str(path):  # half the file reaches the disk, then ENOSPC
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "atomic_write", full_at_step_4)
    with pytest.raises(StorageError) as info:
        train(recipe, tmp_path / "run")
    message = str(info.value)
    assert "No space left on device" in message
    assert "the previous checkpoint (step-00000002) is intact" in message
    assert "--resume" in message
    monkeypatch.setattr(ckpt, "atomic_write", real_write)
    assert every_checkpoint_loads(tmp_path / "run") == 1
    train(None, tmp_path / "run", resume=True)
    assert ckpt.read_pointer(tmp_path / "run", "latest")["step"] == 6


def test_unwritable_run_dir_is_one_message(reversal_dir, tmp_path) -> None:
    """A run dir that cannot be created (a file is in the way): one message, exit 1."""
    recipe = tiny_recipe(reversal_dir)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    (tmp_path / "blocker").write_text("not a directory")
    proc = start_training([str(path), "--out", str(tmp_path / "blocker" / "run")])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "cannot write the run dir" in err and "Traceback" not in err


def nan_loss_at(steps: set[int] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the training loss NaN at these update numbers (1-based; None: always)."""
    from seq2seq import model as model_module  # Seq2Seq.run takes the training loss

    calls = {"n": 0}

    def poisoned(real):
        def loss(*args, **kwargs):
            total, count = real(*args, **kwargs)
            calls["n"] += 1
            if steps is None or calls["n"] in steps:
                total = total * float("nan")
            return total, count

        return loss

    for name in ("projected_cross_entropy", "sequence_loss"):  # fused, and with copying
        monkeypatch.setattr(model_module, name, poisoned(getattr(model_module, name)))


def test_nonfinite_steps_are_skipped_and_counted(reversal_dir, tmp_path, monkeypatch) -> None:
    """A NaN loss skips that update (weights stay finite) and is counted in metrics.jsonl."""
    from seq2seq.bundle import load_run
    from seq2seq.training.metrics_log import read_metrics

    nan_loss_at({2, 3}, monkeypatch)
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 6, "log_every": 6})
    train(parse_recipe(recipe), tmp_path / "run")
    records = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert records[-1]["nonfinite"] == 2
    model = load_run(tmp_path / "run", "latest").model
    assert all(bool(p.isfinite().all()) for p in model.parameters())


def test_nonfinite_in_a_row_stops_after_saving(reversal_dir, tmp_path, monkeypatch) -> None:
    """train.max_nonfinite NaN losses in a row: saved, stopped, with advice."""
    from seq2seq.errors import Seq2SeqError

    nan_loss_at(None, monkeypatch)
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 50, "max_nonfinite": 3})
    with pytest.raises(Seq2SeqError, match="3 non-finite losses or gradients in a row") as info:
        train(parse_recipe(recipe), tmp_path / "run")
    assert "lower train.lr" in str(info.value)
    assert ckpt.read_pointer(tmp_path / "run", "latest")["step"] == 3
