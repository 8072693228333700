"""Pictures end to end: curves.png during training, `seq2seq plot`, `translate
--plot-attention`, and TensorBoard events."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from seq2seq.errors import Seq2SeqError
from seq2seq.plots import attention as attention_plots
from seq2seq.plots.history import read_history
from seq2seq.recipe import parse_recipe
from seq2seq.training import reports
from seq2seq.training.run import train
from tests.conftest import reversal_pairs, tiny_recipe, write_pairs
from tests.conftest import run_cli as run

PNG = b"\x89PNG\r\n\x1a\n"


def _recipe(data: Path, attention: Any = "bahdanau", **train_keys: Any) -> dict[str, Any]:
    settings = {"max_steps": 6, "max_epochs": 5, "validation": {"every": 3}, **train_keys}
    recipe = tiny_recipe(data, train=settings)
    recipe["model"]["attention"] = attention
    return recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small reversal task: 300 training pairs, 12 validation pairs."""
    folder = tmp_path_factory.mktemp("pictures-data")
    write_pairs(folder, "train", reversal_pairs(300, seed=1))
    write_pairs(folder, "valid", reversal_pairs(12, seed=2))
    return folder


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short runs: Bahdanau attention and 2-head attention."""
    root = tmp_path_factory.mktemp("pictures")
    made = {}
    for name, attention in [("additive", "bahdanau"), ("heads", {"type": "multihead", "heads": 2})]:
        made[name] = train(parse_recipe(_recipe(data, attention)), root / name)
    return made


def test_training_redraws_curves_at_each_validation(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validations at steps 2, 4 and the final 5 draw curves.png three times; a resumed run
    redraws it with its new steps."""
    drawn: list[int] = []

    def spy(run_dir: Path) -> Path:
        drawn.append(read_history(run_dir).last_step)
        return real(run_dir)

    real = reports.write_curves
    monkeypatch.setattr(reports, "write_curves", spy)
    recipe = _recipe(data, max_steps=5, validation={"every": 2})
    out = train(parse_recipe(recipe), tmp_path / "run")
    assert drawn == [2, 4, 5]
    curves = out / "curves.png"
    first = curves.read_bytes()
    assert first.startswith(PNG)
    train(None, out, resume=True, overrides=("train.max_steps=7",))
    assert drawn[-2:] == [6, 7]
    assert curves.read_bytes() != first
    assert not [p for p in out.iterdir() if p.name.startswith(".curves")]  # no temp file left


def test_a_plotting_failure_is_only_a_warning(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A broken picture never stops training: the run finishes with a warning."""

    def broken(run_dir: Path) -> Path:
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(reports, "write_curves", broken)
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        out = train(parse_recipe(_recipe(data)), tmp_path / "run")
    assert (out / "checkpoints" / "latest.json").is_file()
    assert "could not write curves.png: RuntimeError: no fonts today" in caplog.text


def test_plot_command_overlays_two_runs(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    """`seq2seq plot A B --out F` writes one PNG with both runs."""
    out = tmp_path / "compare.png"
    code, stdout, err = run(
        ["plot", str(runs["additive"]), str(runs["heads"]), "--out", str(out)], capsys
    )
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}"
    assert out.read_bytes().startswith(PNG)


def test_plot_command_errors(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A missing dir or a dir without metrics: exit 1 with one message, no PNG."""
    code, _, err = run(["plot", str(runs["additive"]), str(tmp_path / "gone")], capsys)
    assert code == 1
    assert err.strip() == f"error: {tmp_path / 'gone'}: no such run dir"
    code, _, err = run(["plot", str(tmp_path)], capsys)
    assert code == 1
    assert "has no metrics.jsonl: not a run dir, or training has not logged yet" in err
    assert not (tmp_path / "curves.png").exists()
    code, _, err = run(["plot"], capsys)
    assert code == 2


@pytest.mark.parametrize("search", [["--search", "greedy"], ["--search", "beam"]])
def test_translate_draws_one_map_per_input_line_with_a_panel_per_head(
    runs: dict[str, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, search
) -> None:
    """Five input lines → 00001.png … 00005.png; with two heads each map has two panels."""
    figures: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        figures.append(real(*args, **kwargs))
        return figures[-1]

    real = attention_plots.attention_figure
    monkeypatch.setattr(attention_plots, "attention_figure", spy)
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5\n6 7 8 9\n0\n1 1 2 2 3\n", encoding="utf-8")
    maps = tmp_path / "maps"
    code, out, err = run(
        [
            "translate",
            str(runs["heads"]),
            "-i",
            str(source),
            *search,
            "--plot-attention",
            str(maps),
        ],
        capsys,
    )
    assert code == 0, err
    assert len(out.splitlines()) == 5
    assert sorted(p.name for p in maps.iterdir()) == [f"0000{i}.png" for i in range(1, 6)]
    assert all(p.read_bytes().startswith(PNG) for p in maps.iterdir())
    for figure in figures:
        panels = [axes.get_title() for axes in figure.axes if axes.images]
        assert panels == ["head 1", "head 2"]
    first = next(axes for axes in figures[0].axes if axes.images)
    assert [t.get_text() for t in first.get_xticklabels()] == ["1", "2", "3", "</s>"]


def test_translate_plot_attention_single_map_and_blank_lines(
    runs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """Additive attention draws too; a blank line has nothing to draw and gets no file."""
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n\n4 5\n", encoding="utf-8")
    maps = tmp_path / "deep" / "maps"
    code, _, err = run(
        ["translate", str(runs["additive"]), "-i", str(source), "--plot-attention", str(maps)],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in maps.iterdir()) == ["00001.png", "00003.png"]


def test_plot_attention_refusals(data: Path, runs, tmp_path: Path, capsys) -> None:
    """No attention in the model, or a search that keeps none: a message, no maps."""
    plain = train(parse_recipe(_recipe(data, None, max_steps=2)), tmp_path / "plain")
    maps = tmp_path / "maps"
    code, _, err = run(["translate", str(plain), "--plot-attention", str(maps)], capsys)
    assert code == 1
    assert "--plot-attention: the model has no attention" in err
    code, _, err = run(
        ["translate", str(runs["additive"]), "--search", "sample", "--plot-attention", str(maps)],
        capsys,
    )
    assert code == 2
    assert "--plot-attention works with --search greedy or beam" in err
    assert not maps.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_plot_attention_from_an_export_dir(data: Path, runs, tmp_path: Path, capsys) -> None:
    """An export dir draws per-head maps like its run, and one without attention is refused
    with the run dir's message (both used to end in an internal error)."""
    from seq2seq.export.write import export_run

    exported = export_run(runs["heads"], tmp_path / "heads-export")
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5\n", encoding="utf-8")
    maps = tmp_path / "maps"
    code, _, err = run(
        ["translate", str(exported), "-i", str(source), "--plot-attention", str(maps)], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in maps.iterdir()) == ["00001.png", "00002.png"]
    plain = train(parse_recipe(_recipe(data, None, max_steps=2)), tmp_path / "plain")
    plain_export = export_run(plain, tmp_path / "plain-export")
    code, _, err = run(
        ["translate", str(plain_export), "-i", str(source), "--plot-attention", str(maps)], capsys
    )
    assert code == 1, err
    assert "--plot-attention: the model has no attention" in err


def test_tensorboard_gets_scalars_and_attention_images(data: Path, tmp_path: Path) -> None:
    """train.tensorboard: true writes the logged scalars and a few attention maps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = _recipe(data, {"type": "multihead", "heads": 2}, tensorboard=True)
    out = train(parse_recipe(recipe), tmp_path / "run")
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/lr", "train/tok_per_s", "valid/loss", "valid/bleu"} <= set(
        tags["scalars"]
    )
    assert [e.step for e in events.Scalars("valid/loss")] == [3, 6]
    assert set(tags["images"]) == {"attention/1", "attention/2", "attention/3"}
    assert [e.step for e in events.Images("attention/1")] == [3, 6]


def test_tensorboard_missing_is_one_clear_error(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the tensorboard package the key is refused before anything is written."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    recipe = _recipe(data, tensorboard=True)
    with pytest.raises(Seq2SeqError, match=r"pip install 'seq2seq\[tensorboard\]'"):
        train(parse_recipe(recipe), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_tensorboard_key_is_in_the_recipe_with_a_false_default(tmp_path: Path) -> None:
    """The key validates as a bool and is off unless asked for."""
    recipe = tiny_recipe(tmp_path)
    assert parse_recipe(recipe).train.tensorboard is False
    recipe["train"]["tensorboard"] = "yes please"
    with pytest.raises(Seq2SeqError, match="train.tensorboard"):
        parse_recipe(yaml.safe_load(yaml.safe_dump(recipe)))
