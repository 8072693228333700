"""A run stopped and resumed ends exactly where an uninterrupted run of the same length ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.recipe import parse_recipe
from seq2seq.training.checkpoint import WEIGHTS, checkpoint_dir
from seq2seq.training.run import train
from tests.conftest import tiny_recipe


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint_dir(run, "latest") / WEIGHTS))


def test_resume_matches_uninterrupted_run(reversal_dir: Path, tmp_path: Path) -> None:
    """Model, optimizer, RNG and data position carry over: the parameters are bitwise equal."""
    settings = {"max_steps": 12, "max_epochs": 5, "validation": {"every": 5}}
    model = {
        "embedding_dropout": 0.2,
        "decoder": {"type": "luong", "hidden_size": 32, "dropout": 0.3},
    }
    full = tiny_recipe(reversal_dir, train=settings, model=model)
    train(parse_recipe(full), tmp_path / "full")

    first = tiny_recipe(reversal_dir, train={**settings, "max_steps": 7}, model=model)
    train(parse_recipe(first), tmp_path / "parts")
    train(None, tmp_path / "parts", resume=True, overrides=("train.max_steps=12",))

    whole, parts = _weights(tmp_path / "full"), _weights(tmp_path / "parts")
    assert whole.keys() == parts.keys()
    for name in whole:
        assert torch.equal(whole[name], parts[name]), name


def test_resume_needs_a_run_dir(tmp_path: Path) -> None:
    """--resume on a folder that is not a run says so."""
    with pytest.raises(Seq2SeqError, match="not a seq2seq run dir"):
        train(None, tmp_path, resume=True)


def test_bad_data_leaves_no_run_dir(reversal_dir: Path, tmp_path: Path) -> None:
    """A data error is found before the run dir is created, so nothing half-written remains."""
    recipe = tiny_recipe(reversal_dir)
    recipe["data"]["valid"]["target"] = str(tmp_path / "missing.tgt")
    with pytest.raises(Seq2SeqError, match="missing.tgt not found"):
        train(parse_recipe(recipe), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_selection_direction_follows_the_metric(reversal_dir: Path) -> None:
    """Best checkpoints maximise BLEU but minimise loss and TER."""
    from seq2seq.training.trainer import metric_direction

    recipe = parse_recipe({**tiny_recipe(reversal_dir), "metrics": ["bleu", "ter"]})
    assert metric_direction(recipe, "bleu") is True
    assert metric_direction(recipe, "ter") is False
    assert metric_direction(recipe, "loss") is False


def test_resume_refuses_model_changes_and_restarts_patience(reversal_dir, tmp_path) -> None:
    """The network is fixed by the run; a run that stopped early trains again on resume."""
    from seq2seq.errors import RecipeError
    from seq2seq.training.checkpoint import load_trainer_state

    recipe = tiny_recipe(reversal_dir, train={"max_steps": 4, "validation": {"every": 2}})
    train(parse_recipe(recipe), tmp_path / "run")
    with pytest.raises(RecipeError, match="model.embedding_dim=64: fixed by the run"):
        train(None, tmp_path / "run", resume=True, overrides=("model.embedding_dim=64",))
    # pretend the run had stopped early; resuming with more steps must train on
    latest = checkpoint_dir(tmp_path / "run", "latest")
    state = load_trainer_state(latest)
    state["loop"]["stopped_early"] = True
    torch.save(state, latest / "trainer.pt")
    train(None, tmp_path / "run", resume=True, overrides=("train.max_steps=6", "train.lr=0.005"))
    resumed = load_trainer_state(checkpoint_dir(tmp_path / "run", "latest"))
    assert resumed["loop"]["step"] == 6
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_sigint_saves_and_resume_continues(signal_name, reversal_dir, tmp_path) -> None:
    """SIGINT or SIGTERM during training saves a checkpoint and exits cleanly (code 130, no
    traceback); resuming continues from it."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    recipe = tiny_recipe(
        reversal_dir,
        train={"max_steps": 100000, "max_epochs": 1000, "validation": {"every": 0}, "log_every": 1},
    )
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "train", str(path), "--out", str(run_dir)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (run_dir / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in err and "Traceback" not in err
    pointer = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert pointer["step"] > 0
    assert signal_name in err
    train(None, run_dir, resume=True, overrides=(f"train.max_steps={pointer['step'] + 2}",))
    resumed = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert resumed["step"] == pointer["step"] + 2


def test_resuming_a_finished_run_trains_nothing(reversal_dir: Path, tmp_path: Path, caplog):
    """A run that reached train.max_steps (or max_epochs) and is resumed with the same budget
    stays as it is: no extra update, no new checkpoint, no new metrics. It used to take one
    more step each time, past max_steps."""
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 4, "validation": {"every": 3}})
    run = train(parse_recipe(recipe), tmp_path / "run")
    before = _weights(run)
    metrics = (run / "metrics.jsonl").read_text("utf-8")
    with caplog.at_level("INFO", logger="seq2seq.train"):
        train(None, run, resume=True)
    assert "the run has used its budget at step 4" in caplog.text
    assert checkpoint_dir(run, "latest").name == "step-00000004"
    assert all(torch.equal(before[k], v) for k, v in _weights(run).items())
    assert (run / "metrics.jsonl").read_text("utf-8") == metrics
    train(None, run, resume=True, overrides=("train.max_steps=6",))
    assert checkpoint_dir(run, "latest").name == "step-00000006"
