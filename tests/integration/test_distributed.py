"""Training in 2 processes (DDP over Gloo, launched by torchrun) on the CPU: the ranks stay
identical, match one process taking the same global batches, resume exactly (also with another
number of processes), and a failing rank ends the job with a message naming it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from seq2seq.recipe import parse_recipe
from seq2seq.training.checkpoint import WEIGHTS, checkpoint_dir, load_trainer_state
from seq2seq.training.run import train
from tests.conftest import tiny_recipe

ENV = dict(os.environ, OMP_NUM_THREADS="1")
WORKER = Path(__file__).with_name("ddp_steps.py")
STEPS = {"max_steps": 6, "max_epochs": 5, "validation": {"every": 3}, "log_every": 1}


def _recipe_file(directory: Path, recipe: dict) -> Path:
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _seq2seq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=240,
        check=False,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    directory = checkpoint_dir(run, "latest")
    assert directory is not None
    return load_file(str(directory / WEIGHTS))


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), name


def test_ranks_agree_every_step_and_match_one_process(reversal_dir: Path, tmp_path: Path) -> None:
    """After every update both ranks hold identical parameters, equal (to float rounding) to
    one process accumulating the same two batches per update."""
    recipe = tiny_recipe(reversal_dir)
    path = _recipe_file(tmp_path, recipe)
    out = tmp_path / "ranks.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", str(WORKER), str(path), str(out), "4"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads(out.read_text())

    single = tmp_path / "single"
    single.mkdir()
    alone = _recipe_file(single, tiny_recipe(reversal_dir, train={"accumulate": 2}))
    done = subprocess.run(
        [sys.executable, str(WORKER), str(alone), str(single / "one.json"), "4"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = json.loads((single / "one.json").read_text())
    assert len(ranks) == len(one) == 4
    for step, (two, ref) in enumerate(zip(ranks, one, strict=True), start=1):
        assert two["spread"] == 0.0, f"ranks differ after step {step}"
        assert two["loss"] == pytest.approx(ref["loss"], abs=1e-6)
        diff = (torch.tensor(two["params"]) - torch.tensor(ref["params"])).abs().max()
        assert float(diff) < 1e-5, f"step {step}: {float(diff)}"
    first = torch.tensor(ranks[0]["params"])
    assert not torch.equal(first, torch.tensor(ranks[-1]["params"]))  # training moved them


def test_two_process_run_resumes_exactly_and_with_one_process(
    reversal_dir: Path, tmp_path: Path
) -> None:
    """`seq2seq train --nproc 2` stopped after 3 updates and resumed (2 processes) ends bitwise
    where an uninterrupted 6-update run ends; resumed in 1 process with train.accumulate=2
    (the same global batch) it ends there up to float rounding. Rank 0 alone writes."""
    path = _recipe_file(tmp_path, tiny_recipe(reversal_dir, train=STEPS))
    full, part = tmp_path / "full", tmp_path / "part"
    done = _seq2seq("train", "--nproc", "2", str(path), "--out", str(full), "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in lines if r["split"] == "valid"] == [3, 6]

    done = _seq2seq("train", "--nproc", "2", str(path), "--out", str(part), "train.max_steps=3")
    assert done.returncode == 0, done.stderr[-3000:]
    other = tmp_path / "other"
    shutil.copytree(part, other)
    done = _seq2seq("train", "--nproc", "2", "--resume", str(part), "train.max_steps=6")
    assert done.returncode == 0, done.stderr[-3000:]
    reference = _weights(full)
    resumed = _weights(part)
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name

    train(None, other, resume=True, overrides=("train.max_steps=6", "train.accumulate=2"))
    _assert_close(reference, _weights(other), atol=1e-5)
    state = load_trainer_state(checkpoint_dir(other, "latest"))  # type: ignore[arg-type]
    assert state["loop"]["step"] == 6
    assert len(state["rng_ranks"]) == 1


def test_failing_rank_ends_the_job_and_is_named(reversal_dir: Path, tmp_path: Path) -> None:
    """A rank that raises takes the job down (no hang) with a message naming rank and error."""
    path = _recipe_file(tmp_path, tiny_recipe(reversal_dir, train=STEPS))
    env = dict(ENV, SEQ2SEQ_FAULT="1:2")
    done = _seq2seq("train", "--nproc", "2", str(path), "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training failed: rank 1 (local rank 1) exited with code 3")
    assert "fault injected by SEQ2SEQ_FAULT=1:2" in last


def test_accumulation_counts_updates_and_global_batches(reversal_dir: Path, tmp_path: Path) -> None:
    """train.accumulate=2 with half the batch budget is not the same run as one big batch, but
    it trains: the step count counts updates, not batches."""
    recipe = tiny_recipe(reversal_dir, train={"accumulate": 2, "max_steps": 3})
    train(parse_recipe(recipe), tmp_path / "acc")
    state = load_trainer_state(checkpoint_dir(tmp_path / "acc", "latest"))  # type: ignore[arg-type]
    assert state["loop"]["step"] == 3
    assert state["loop"]["batch_in_epoch"] == 6
