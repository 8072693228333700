"""Bad input, tried systematically: every case ends in one clear message, a non-zero exit, no
traceback, and no output file that looks complete."""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import reversal_pairs, tiny_recipe, write_pairs
from tests.conftest import run_cli as run

Recipe = dict[str, Any]


def assert_one_message(code: int, err: str, expected: str, exit_code: int = 1) -> None:
    """The shape every user error must have (the expected words outside any temp path)."""
    assert code == exit_code, err
    assert expected in re.sub(r"/\S*pytest-of\S*/", "PATH/", err), err
    assert "Traceback" not in err and "internal error" not in err, err


def edit(path: str, value: Any) -> Callable[[Recipe], Recipe]:
    """A recipe change: set (or, with value ..., delete) the dotted key `path`."""

    def change(recipe: Recipe) -> Recipe:
        recipe = copy.deepcopy(recipe)
        *parents, last = path.split(".")
        node = recipe
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            del node[last]
        else:
            node[last] = value
        return recipe

    return change


# (case, change to a valid recipe, overrides, what the message must say): one row per kind of
# problem the validator knows
RECIPE_CASES: list[tuple[str, Callable[[Recipe], Any], list[str], str]] = [
    ("unknown section", edit("trian", {}), [], "Did you mean 'train'"),
    ("unknown key", edit("train.max_step", 3), [], "Did you mean 'max_steps'"),
    ("missing required", edit("data.train", ...), [], "data.train: missing required key"),
    ("wrong type", edit("train.lr", "fast"), [], "expected float, got 'fast'"),
    ("wrong list item", edit("metrics", [5]), [], "metrics"),
    ("bad choice", edit("train.teacher_forcing", {"schedule": "cosine"}), [], "cosine"),
    ("unknown component", edit("model.attention", "bahdanu"), [], "Did you mean 'bahdanau'"),
    ("component argument", edit("model.encoder.hidden_sise", 8), [], "hidden_sise"),
    ("component arg type", edit("model.encoder.hidden_size", "big"), [], "hidden_size"),
    ("component without type", edit("model.encoder", {"hidden_size": 8}), [], "model.encoder"),
    ("component refuses value", edit("search", {"type": "beam", "max_length": 0}), [], "at least"),
    ("select not a metric", edit("train.validation.select", "rouge9"), [], "neither loss"),
    (
        "early stop needs valid",
        edit("data.valid", None),
        ["train.early_stopping.patience=3"],
        "needs",
    ),
    (
        "share needs joint",
        edit("data.joint_vocab", False),
        ["model.share_embeddings=true"],
        "joint",
    ),
    ("files and dataset", edit("data.train.dataset", "json"), [], "give one of"),
    ("only source", edit("data.train.target", ...), [], "give both `source` and `target`"),
    ("tsv and files", edit("data.train.tsv", "x.tsv"), [], "give one of"),
    ("not positive", edit("data.max_length", 0), [], "must be positive, got 0"),
    ("ratio out of range", edit("train.teacher_forcing", 1.5), [], "between 0 and 1"),
    ("copy needs joint", edit("data.joint_vocab", False), ["model.copy=true"], "copying needs"),
    ("override syntax", lambda r: r, ["train.lr"], "key.path=value"),
    ("override bad YAML", lambda r: r, ["train.lr=[1"], "not valid YAML"),
    ("override non-section", lambda r: r, ["train.lr.x=1"], "not a section"),
    ("override unknown key", lambda r: r, ["train.lrr=1"], "Did you mean 'lr'"),
    ("not a mapping", lambda r: [1, 2], [], "a recipe is a YAML mapping"),
    ("empty file", lambda r: "", [], "a recipe is a YAML mapping"),
    ("invalid YAML", lambda r: "model: [unclosed\n", [], "invalid YAML"),
    ("not UTF-8", lambda r: b"name: \xff\xfe\n", [], "not UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "overrides", "expected"),
    [case[1:] for case in RECIPE_CASES],
    ids=[case[0] for case in RECIPE_CASES],
)
def test_recipe_errors(change, overrides, expected, tmp_path, capsys) -> None:
    """Every recipe problem is named by key path, with a hint, exit 1, and no traceback."""
    content = change(tiny_recipe(tmp_path))
    path = tmp_path / "recipe.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path.write_text(text, encoding="utf-8")
    code, _, err = run(["validate", str(path), *overrides], capsys)
    assert_one_message(code, err, expected)
    assert err.startswith((f"error: {path}", "error: the overrides")), err


def pairs_files(root: Path, source: bytes, target: bytes) -> dict[str, str]:
    """A train corpus entry for two files holding these bytes."""
    (root / "bad.src").write_bytes(source)
    (root / "bad.tgt").write_bytes(target)
    return {"source": str(root / "bad.src"), "target": str(root / "bad.tgt")}


GOOD = b"1 2 3\n4 5 6\n7 8 9\n"
# (case, train corpus built in a folder, what the message must say)
DATA_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    ("missing file", lambda d: {"source": str(d / "no.src"), "target": str(d / "no.tgt")},
     "data.train.source: file PATH/no.src not found"),
    ("a directory", lambda d: {"source": str(d), "target": str(d)}, "is not a file"),
    ("empty file", lambda d: pairs_files(d, b"", b""), "is empty"),
    ("line counts differ", lambda d: pairs_files(d, GOOD, b"1\n2\n"), "has 3 lines but"),
    ("not UTF-8", lambda d: pairs_files(d, GOOD, b"1\n2\n3 \xff 4\n"), "line 3 is not valid UTF-8"),
    ("binary", lambda d: pairs_files(d, bytes(range(256)) * 4, GOOD), "not valid UTF-8"),
    ("all blank", lambda d: pairs_files(d, b"\n \n\t\n", b"a\nb\nc\n"), "no training pair is left"),
    ("all too long", lambda d: pairs_files(d, b"1 " * 500 + b"\n", b"2\n"), "data.max_length"),
    ("tsv columns", lambda d: tsv_file(d, "a\tb\nc\td\te\n"), "line 2 has 3 tab-separated"),
    ("tsv no tab", lambda d: tsv_file(d, "a b\n"), "line 1 has 1 tab-separated"),
    ("dataset column", lambda d: jsonl_file(d, '{"src": "a", "target": "b"}\n'),
     "column 'source' not in the dataset"),
    ("dataset file", lambda d: {"dataset": "json", "data_files": str(d / "none.jsonl")},
     "not found"),
    ("dataset not text", lambda d: jsonl_file(d, '{"source": 5, "target": "b"}\n'), "not text"),
]  # fmt: skip


def tsv_file(root: Path, text: str) -> dict[str, Any]:
    """A train corpus entry for one TSV file."""
    (root / "bad.tsv").write_text(text, encoding="utf-8")
    return {"tsv": str(root / "bad.tsv")}


def jsonl_file(root: Path, text: str) -> dict[str, Any]:
    """A train corpus entry for one JSON-lines file read through `datasets`."""
    (root / "bad.jsonl").write_text(text, encoding="utf-8")
    return {"dataset": "json", "data_files": str(root / "bad.jsonl")}


@pytest.mark.parametrize(
    ("corpus", "expected"),
    [case[1:] for case in DATA_CASES],
    ids=[case[0] for case in DATA_CASES],
)
def test_data_errors(corpus, expected, reversal_dir, tmp_path, capsys) -> None:
    """Bad training data: one message naming the file (and line), no run dir left behind."""
    folder = tmp_path / "bad"
    folder.mkdir()
    recipe = tiny_recipe(reversal_dir)
    recipe["data"]["train"] = corpus(folder)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, err = run(["train", str(path), "--out", str(tmp_path / "run")], capsys)
    assert_one_message(code, err, expected)
    assert not (tmp_path / "run" / "bundle.json").exists()


def test_bad_validation_data_is_named(reversal_dir, tmp_path, capsys) -> None:
    """The validation split is checked as strictly as the training split."""
    recipe = tiny_recipe(reversal_dir)
    recipe["data"]["valid"] = pairs_files(tmp_path, GOOD, b"1\n\xc3\n3\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, err = run(["train", str(path), "--out", str(tmp_path / "run")], capsys)
    assert_one_message(code, err, "data.valid.target")
    assert "line 2" in err


# (case, command line after `seq2seq`, exit code, what the message must say)
MISUSE_CASES = [
    ("no command", ["frobnicate"], 2, "No such command"),
    ("missing run dir", ["translate"], 2, "Missing argument"),
    ("unknown option", ["translate", "{run}", "--bogus"], 2, "No such option"),
    ("bad number", ["translate", "{run}", "--batch-size", "0"], 2, "--batch-size"),
    ("attention needs jsonl", ["translate", "{run}", "--attention"], 2, "--output-format jsonl"),
    ("option of other search", ["translate", "{run}", "--search", "greedy", "--beam-size", "4"],
     1, "beam_size"),
    ("n-best over beam", ["translate", "{run}", "--search", "beam", "--beam-size", "2",
                          "--n-best", "3"], 1, "n_best"),
    ("unknown search", ["translate", "{run}", "--search", "bean"], 1, "Did you mean 'beam'"),
    ("train without recipe", ["train", "--out", "{tmp}/r"], 2, "give a RECIPE"),
    ("resume and recipe", ["train", "{tmp}/r.yaml", "--resume", "{run}"], 2, "--resume takes"),
    ("resume a non-run", ["train", "--resume", "{tmp}"], 1, "is not a seq2seq run dir"),
    ("unknown device", ["translate", "{run}", "--device", "tpu"], 1, "--device tpu"),
    ("score misaligned", ["score", "--hyp", "{data}/train.src", "--ref", "{data}/valid.src"],
     1, "must be aligned"),
    ("unknown metric", ["evaluate", "{run}", "--source", "{data}/valid.src", "--reference",
                        "{data}/valid.tgt", "--metric", "blue"], 1, "Did you mean 'bleu'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "exit_code", "expected"),
    [case[1:] for case in MISUSE_CASES],
    ids=[case[0] for case in MISUSE_CASES],
)
def test_cli_misuse(args, exit_code, expected, trained, tmp_path, capsys) -> None:
    """Missing arguments and conflicting options: a usage message (exit 2) or an error (1)."""
    run_dir, data = trained
    filled = [a.format(run=run_dir, tmp=tmp_path, data=data) for a in args]
    code, _, err = run(filled, capsys)
    assert_one_message(code, err, expected, exit_code)


def make_long_pairs(root: Path) -> Path:
    """Training data where some pairs are blank or too long: they are dropped, not fatal."""
    pairs = reversal_pairs(300, seed=4)
    pairs += [("", "1"), ("1 " * 50, "2"), ("3", "  ")]
    write_pairs(root, "mixed", pairs)
    return root


def test_dropped_pairs_are_counted_not_fatal(reversal_dir, tmp_path, capsys, caplog) -> None:
    """Blank and over-long training pairs are dropped with a count; training goes on."""
    caplog.set_level(logging.INFO)
    make_long_pairs(tmp_path)
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 2, "validation": {"every": 0}})
    recipe["data"]["train"] = {
        "source": str(tmp_path / "mixed.src"),
        "target": str(tmp_path / "mixed.tgt"),
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, err = run(["train", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert "dropped 3 of 303 training pairs" in caplog.text


# (case, input bytes, what the message must say); the line with the bad bytes is named
TRANSLATE_ERRORS = [
    ("not UTF-8 on line 3", b"1 2\n3 4\n5 \xe9 6\n7\n", "line 3 is not valid UTF-8"),
    ("binary", bytes(range(256)) * 8, "is not valid UTF-8"),
    ("truncated UTF-8 at the end", b"1 2\n\xe2\x82", "line 2 is not valid UTF-8"),
    ("empty", b"", "is empty: there is nothing to translate"),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [case[1:] for case in TRANSLATE_ERRORS],
    ids=[case[0] for case in TRANSLATE_ERRORS],
)
def test_translate_input_errors_leave_no_output(data, expected, trained, tmp_path, capsys) -> None:
    """Bad input: exit 1 with the message, and no output file (not even a partial one)."""
    run_dir, _ = trained
    source, target = tmp_path / "in.txt", tmp_path / "out" / "out.txt"
    target.parent.mkdir()
    source.write_bytes(data)
    code, _, err = run(
        ["translate", str(run_dir), "-i", str(source), "-o", str(target), "--batch-size", "1"],
        capsys,
    )
    assert_one_message(code, err, expected)
    assert list(target.parent.iterdir()) == []


def test_translate_input_that_is_a_directory(trained, tmp_path, capsys) -> None:
    """`-i DIR` is one message naming the directory, not an IsADirectoryError."""
    run_dir, _ = trained
    code, _, err = run(["translate", str(run_dir), "-i", str(tmp_path)], capsys)
    assert_one_message(code, err, "is a directory; give a text file")
    assert f"--input: {tmp_path} is a directory" in err


ODD_LINES = [
    "1 2 3",
    "",
    "   ",
    "\t4\t5\t",
    "6 " * 50_000,  # a 100,000-character line
    "\x00 7 \x00",
    "8 9\r",  # a stray carriage return inside the file
    "ü ß 😀 \u200f مرحبا",
    "1 2 3",
    "\u2028 3 \u2029",  # Unicode line separators are not line ends
]


def test_odd_lines_keep_count_and_order(trained, tmp_path, capsys, caplog) -> None:
    """Every input line gives exactly one output line, in order; each equals its own
    translation alone; an over-long line is cut with a warning, not dropped."""
    run_dir, _ = trained
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(ODD_LINES) + "\n", encoding="utf-8", newline="")
    code, _, err = run(
        ["translate", str(run_dir), "-i", str(source), "-o", str(target), "--batch-size", "3"],
        capsys,
    )
    assert code == 0, err
    assert "input line 5 has" in caplog.text and "translating its first 1024" in caplog.text
    together = target.read_text(encoding="utf-8").split("\n")
    assert together[-1] == "" and len(together) == len(ODD_LINES) + 1
    assert together[1] == together[2] == ""
    assert together[0] == together[8]
    for number, line in enumerate(ODD_LINES):
        alone = tmp_path / f"line{number}.txt"
        alone.write_text(line + "\n", encoding="utf-8", newline="")
        code, out, err = run(["-q", "translate", str(run_dir), "-i", str(alone)], capsys)
        assert code == 0, err
        assert out == together[number] + "\n", f"line {number + 1}"


def best_dir(run: Path) -> Path:
    """The checkpoint `translate` loads."""
    pointer = json.loads((run / "checkpoints" / "best.json").read_text("utf-8"))
    return run / "checkpoints" / pointer["dir"]


def rewrite_meta(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit bundle.json in place."""
    meta = json.loads((run / "bundle.json").read_text("utf-8"))
    change(meta)
    (run / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")


def truncate(path: Path) -> None:
    """Cut a file to a third of its size."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def plant_pickle(path: Path) -> None:
    """A trainer state that would run code when unpickled."""
    import pickle

    path.write_bytes(pickle.dumps({"loop": {"step": 1}, "x": print}))


# (case, damage done to a copy of a good run dir, command, what the message must say)
BUNDLE_CASES: list[tuple[str, Callable[[Path], Any], str, str]] = [
    ("no bundle.json", lambda r: (r / "bundle.json").unlink(), "translate",
     "bundle.json is missing"),
    ("bundle.json garbage", lambda r: (r / "bundle.json").write_bytes(b"{\xff"), "translate",
     "PATH/bundle.json is damaged"),
    ("newer format", lambda r: rewrite_meta(r, lambda m: m.update(format=99)), "translate",
     "has bundle format 99, newer than"),
    ("recipe gone bad", lambda r: rewrite_meta(r, lambda m: m["recipe"].update(train=5)),
     "translate", "no longer validates"),
    ("component missing", lambda r: rewrite_meta(
        r, lambda m: m["components"]["attention"].update(name="fancy", origin="fancy-pkg 1.0")),
     "translate", "needs attention 'fancy' (fancy-pkg 1.0), which is not available"),
    ("tokenizer missing", lambda r: (r / "tokenizer" / "joint.bin").unlink(), "translate",
     "tokenizer file PATH/joint.bin is missing"),
    ("tokenizer garbage", lambda r: (r / "tokenizer" / "joint.bin").write_bytes(b"junk"),
     "translate", "not a sentencepiece model"),
    ("weights missing", lambda r: (best_dir(r) / "model.safetensors").unlink(), "translate",
     "weights file PATH/model.safetensors is missing"),
    ("weights truncated", lambda r: truncate(best_dir(r) / "model.safetensors"), "translate",
     "weights file PATH/model.safetensors is damaged or truncated"),
    ("no checkpoint", lambda r: shutil.rmtree(r / "checkpoints"), "translate",
     "has no checkpoint yet"),
    ("planted pickle", lambda r: plant_pickle(latest_dir(r) / "trainer.pt"), "resume",
     "refusing to load PATH/trainer.pt"),
    ("trainer state truncated", lambda r: truncate(latest_dir(r) / "trainer.pt"), "resume",
     "trainer state PATH/trainer.pt is damaged or truncated"),
]  # fmt: skip


def latest_dir(run: Path) -> Path:
    """The checkpoint `--resume` continues from."""
    pointer = json.loads((run / "checkpoints" / "latest.json").read_text("utf-8"))
    return run / "checkpoints" / pointer["dir"]


@pytest.mark.parametrize(
    ("damage", "command", "expected"),
    [case[1:] for case in BUNDLE_CASES],
    ids=[case[0] for case in BUNDLE_CASES],
)
def test_damaged_run_dirs(damage, command, expected, trained, tmp_path, capsys) -> None:
    """A damaged or foreign run dir is named precisely and nothing of it is executed."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    damage(run_dir)
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n", encoding="utf-8")
    if command == "translate":
        args = ["translate", str(run_dir), "-i", str(source), "-o", str(tmp_path / "out.txt")]
    else:
        args = ["train", "--resume", str(run_dir), "train.max_steps=20"]
    code, _, err = run(args, capsys)
    assert_one_message(code, err, expected)
    assert not (tmp_path / "out.txt").exists()
