"""The command line end to end: train → translate → evaluate → score, and its error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli as run
from tests.conftest import tiny_recipe


def test_train_writes_a_bundle(trained: tuple[Path, Path]) -> None:
    """The run dir holds the resolved recipe (with the override), tokenizer, checkpoints, log."""
    run_dir, _ = trained
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["train"]["lr"] == 0.02
    assert (run_dir / "tokenizer" / "joint.bin").is_file()
    assert (run_dir / "checkpoints" / "best.json").is_file()
    assert (run_dir / "metrics.jsonl").read_text().count('"split": "valid"') == 2


def test_translate_keeps_lines_and_order(trained, tmp_path, capsys) -> None:
    """One output line per input line, blank lines stay blank, -o written whole."""
    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n\n4 5 6 7\n   \n9\n", encoding="utf-8")
    out_file = tmp_path / "out.txt"
    code, _, err = run(["translate", str(run_dir), "-i", str(source), "-o", str(out_file)], capsys)
    assert code == 0, err
    lines = out_file.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 6 and lines[-1] == ""
    assert lines[1] == "" and lines[3] == ""
    assert lines[0] and lines[2] and lines[4]


def test_translate_reads_stdin(trained, capsys, monkeypatch) -> None:
    """Without -i the input comes from stdin."""
    import io

    run_dir, _ = trained
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1 2\n3 4\n")))
    code, out, _ = run(["translate", str(run_dir), "--max-length", "3"], capsys)
    assert code == 0
    assert len(out.splitlines()) == 2


def test_translate_rejects_non_utf8_with_line_number(trained, tmp_path, capsys) -> None:
    """Bad input bytes: one message with the line, exit 1, no traceback, no output file."""
    run_dir, _ = trained
    source = tmp_path / "bad.txt"
    source.write_bytes(b"1 2\n\xff\xfe\n")
    out_file = tmp_path / "out.txt"
    code, _, err = run(["translate", str(run_dir), "-i", str(source), "-o", str(out_file)], capsys)
    assert code == 1
    assert "line 2 is not valid UTF-8" in err and "Traceback" not in err
    assert not out_file.exists()


def test_evaluate_and_score(trained, tmp_path, capsys) -> None:
    """evaluate prints each metric with its signature; score does the same for files."""
    run_dir, data = trained
    code, out, _ = run(
        [
            "evaluate",
            str(run_dir),
            "--source",
            str(data / "valid.src"),
            "--reference",
            str(data / "valid.tgt"),
            "--metric",
            "bleu,chrf,rougeL",
            "-o",
            str(tmp_path / "hyp.txt"),
        ],
        capsys,
    )
    assert code == 0
    assert "segments: 20" in out and "tok:13a" in out and "stemming:on" in out
    code, out, _ = run(
        [
            "score",
            "--hyp",
            str(data / "valid.tgt"),
            "--ref",
            str(data / "valid.tgt"),
            "--metric",
            "bleu,ter",
        ],
        capsys,
    )
    assert code == 0
    assert "bleu       100.00" in out and "ter          0.00" in out


def test_validate_and_components(trained, capsys) -> None:
    """validate prints the model and its size; components lists kinds, origins, arguments."""
    run_dir, _ = trained
    code, out, _ = run(["validate", str(run_dir / "recipe.yaml")], capsys)
    assert code == 0 and "parameters:" in out and "OK" in out
    code, out, _ = run(["components", "attention"], capsys)
    assert code == 0
    assert "bahdanau" in out and "[built-in]" in out and "hidden_size" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["translate", "{tmp}/nowhere"], "is not a directory"),
        (["translate", "{tmp}"], "is not a seq2seq run dir"),
        (["train", "{tmp}/missing.yaml", "--out", "{tmp}/r"], "file not found"),
        (["train", "{recipe}"], "give --out"),
        (["validate", "{recipe}", "model.attention.type=bahdanu"], "Did you mean 'bahdanau'"),
        (["validate", "{recipe}", "model.encoder.hidden_sise=3"], "Did you mean 'hidden_size'"),
        (["validate", "{recipe}", "train.lr=fast"], "expected float, got 'fast'"),
        (["score", "--hyp", "{recipe}", "--ref", "{tmp}/none"], "not found"),
    ],
)
def test_user_errors_are_one_message(args, message, tmp_path, capsys) -> None:
    """Each user error: exit code 1 (2 for usage), the message, no traceback."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path)), encoding="utf-8")
    filled = [a.format(tmp=tmp_path, recipe=recipe) for a in args]
    code, _, err = run(filled, capsys)
    assert code in (1, 2)
    assert message in err
    assert "Traceback" not in err


def test_existing_run_dir_is_not_overwritten(trained, capsys) -> None:
    """Training into an existing run refuses and points at --resume."""
    run_dir, _ = trained
    code, _, err = run(["train", str(run_dir / "recipe.yaml"), "--out", str(run_dir)], capsys)
    assert code == 1 and "--resume" in err


def test_console_script_runs_as_a_process(trained, tmp_path) -> None:
    """`python -m seq2seq` works as a real process; --debug shows the traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "not a seq2seq run dir" in result.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "seq2seq", "--debug", "translate", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert "Traceback" in debug.stderr


def test_translate_imports_no_plotting_or_scoring_library(trained, tmp_path) -> None:
    """translate's start-up skips matplotlib, sacrebleu and rouge-score (0.8 s of imports)."""
    run_dir, data = trained
    probe = (
        "import sys\n"
        "from seq2seq.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "heavy = ('matplotlib', 'sacrebleu', 'rouge_score', 'nltk')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    output = tmp_path / "out.txt"
    args = ["-q", "translate", str(run_dir), "-i", str(data / "valid.src"), "-o", str(output)]
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    assert len(output.read_text(encoding="utf-8").splitlines()) == 20


def test_the_command_process_freezes_its_imports_and_the_in_process_cli_does_not() -> None:
    """As the process's command, the CLI imports with the collector paused and freezes what the
    imports made (the interpreter's exit then skips them); called with argv it leaves both be."""
    probe = (
        "import gc, sys\n"
        "from seq2seq.cli import main\n"
        "argv = None if sys.argv[1] == 'command' else ['components']\n"
        "sys.argv[1:] = ['components']\n"
        "try:\n"
        "    main(argv)\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print(gc.get_freeze_count() > 10000, gc.isenabled(), 'torch' in sys.modules)\n"
    )
    for mode, frozen in (("command", "True"), ("in-process", "False")):
        result = subprocess.run(
            [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True
        )
        assert result.stdout.splitlines()[-1] == f"{frozen} True True", (mode, result.stdout)


def test_translate_beam_nbest_jsonl_with_attention(trained, tmp_path, capsys) -> None:
    """jsonl gives each input's n-best list with scores and per-piece attention rows."""
    import json

    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n\n4 5\n", encoding="utf-8")
    code, out, err = run(
        [
            "translate",
            str(run_dir),
            "-i",
            str(source),
            "--search",
            "beam",
            "--beam-size",
            "4",
            "--n-best",
            "3",
            "--length-penalty",
            "0.6",
            "--output-format",
            "jsonl",
            "--attention",
        ],
        capsys,
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["hypotheses"] == []
    first = records[0]["hypotheses"]
    assert len(first) == 3
    assert [h["score"] for h in first] == sorted((h["score"] for h in first), reverse=True)
    rows = first[0]["attention"]
    assert len(rows) == len(first[0]["target_pieces"])
    assert len(rows[0]) == len(records[0]["hypotheses"][0]["source_pieces"])
    assert abs(sum(rows[0]) - 1.0) < 1e-3


def test_translate_option_errors(trained, capsys) -> None:
    """Options that do not fit the search say so."""
    run_dir, _ = trained
    code, _, err = run(["translate", str(run_dir), "--beam-size", "3"], capsys)
    assert code == 1
    assert "not an argument of search 'greedy'" in err
    code, _, err = run(["translate", str(run_dir), "--attention"], capsys)
    assert code == 2
    assert "--attention needs --output-format jsonl" in err


def test_ensemble_of_a_run_with_itself_matches_the_run(trained, tmp_path, capsys) -> None:
    """Averaging a model with itself changes nothing; different vocabularies are refused."""
    run_dir, data = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5 6 7\n", encoding="utf-8")
    code, together, err = run(
        [
            "translate",
            str(run_dir),
            "-i",
            str(source),
            "--ensemble",
            str(run_dir),
            "--search",
            "beam",
        ],
        capsys,
    )
    assert code == 0, err
    _, beam_alone, _ = run(
        ["translate", str(run_dir), "-i", str(source), "--search", "beam"], capsys
    )
    assert together == beam_alone
    other = tmp_path / "other"
    recipe = tiny_recipe(data, train={"max_steps": 2, "validation": {"every": 2}})
    recipe["data"]["tokenizer"] = "char"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert run(["-q", "train", str(path), "--out", str(other)], capsys)[0] == 0
    code, _, err = run(
        ["translate", str(run_dir), "-i", str(source), "--ensemble", str(other)], capsys
    )
    assert code == 1
    assert "vocabularies differ" in err


def test_translate_file_errors_are_one_message(trained, tmp_path, capsys) -> None:
    """A missing input file or an unwritable output: exit 1 and a message, not a bug report."""
    run_dir, _ = trained
    code, _, err = run(["translate", str(run_dir), "-i", str(tmp_path / "nope.en")], capsys)
    assert code == 1
    assert "--input: file" in err and "not found" in err
    source = tmp_path / "in.txt"
    source.write_text("1 2\n", encoding="utf-8")
    target = tmp_path / "no-such-dir" / "out.txt"
    code, _, err = run(["translate", str(run_dir), "-i", str(source), "-o", str(target)], capsys)
    assert code == 1
    assert "cannot write" in err and "internal error" not in err
    code, _, err = run(
        ["score", "--hyp", str(source), "--ref", str(source), "--metric", "bleu,rougeX"], capsys
    )
    assert code == 1
    assert "unknown metric 'rougeX'" in err


def test_validate_notes_missing_data_but_passes(tmp_path, capsys) -> None:
    """A recipe whose data is not there yet validates, with a note naming the missing file."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path / "not-yet")), encoding="utf-8")
    code, out, err = run(["validate", str(recipe)], capsys)
    assert code == 0
    assert "OK" in out
    assert "note: data.train:" in err and "does not exist yet" in err
