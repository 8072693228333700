"""`seq2seq export` end to end: the export dir decodes like the run, int8 stays plausible, and a
damaged or foreign bundle is refused with one message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.bundle import load_run
from seq2seq.export.traced import GRAPH_FILE
from seq2seq.inference import translate_batch
from seq2seq.registry import build
from tests.conftest import reversal_pairs
from tests.conftest import run_cli as run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def exports(reversal_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reversal run exported as float and as int8."""
    from seq2seq.export.write import export_run

    root = tmp_path_factory.mktemp("exports")
    return {
        "float": export_run(reversal_run, root / "float"),
        "int8": export_run(reversal_run, root / "int8", "int8"),
    }


SOURCES = [s for s, _ in reversal_pairs(60, seed=42, max_len=6)]


def outputs(directory: Path, search: str, **options: int) -> list[list[str]]:
    """Every hypothesis text of every test sentence."""
    loaded = load_run(directory)
    found = translate_batch(
        loaded, build("search", {"type": search, **options}, where="t"), SOURCES
    )
    return [t.texts for t in found]


@pytest.mark.parametrize(
    ("search", "options"), [("greedy", {}), ("beam", {"beam_size": 4, "n_best": 2})]
)
def test_float_export_decodes_exactly_like_the_run(reversal_run, exports, search, options) -> None:
    """Same texts for greedy and for beam search with two outputs per sentence."""
    assert outputs(exports["float"], search, **options) == outputs(reversal_run, search, **options)


def test_int8_export_is_plausible(reversal_run: Path, exports: dict[str, Path]) -> None:
    """int8 reverses about as many strings correctly as float, and mostly agrees with it."""
    references = [" ".join(reversed(s.split())) for s in SOURCES]
    float_out = [t[0] for t in outputs(reversal_run, "greedy")]
    int8_out = [t[0] for t in outputs(exports["int8"], "greedy")]
    correct_float = sum(o == r for o, r in zip(float_out, references, strict=True))
    correct_int8 = sum(o == r for o, r in zip(int8_out, references, strict=True))
    agree = sum(a == b for a, b in zip(float_out, int8_out, strict=True))
    assert correct_float >= 30  # the fixture model has learned the task (60 of 60 here)
    assert correct_int8 >= correct_float - 6
    print(f"exact: float {correct_float}, int8 {correct_int8} of 60; agreement {agree}")
    assert agree >= 50


def test_export_bundle_contents(exports: dict[str, Path]) -> None:
    """bundle.json marks the export (format, runtime, digest, layout); the tokenizer is there."""
    meta = json.loads((exports["int8"] / "bundle.json").read_text("utf-8"))
    assert meta["format"] == 1
    section = meta["export"]
    assert (section["format"], section["runtime"], section["quantize"]) == (
        1,
        "torchscript",
        "int8",
    )
    assert section["file"] == GRAPH_FILE and len(section["sha256"]) == 64
    assert section["verified_max_difference"] <= 1e-3
    assert all((exports["int8"] / f).is_file() for f in meta["tokenizer_files"].values())
    assert (exports["int8"] / "recipe.yaml").is_file()
    assert not (exports["int8"] / "checkpoints").exists()
    int8_size = (exports["int8"] / GRAPH_FILE).stat().st_size
    assert int8_size < (exports["float"] / GRAPH_FILE).stat().st_size


def test_cli_export_and_translate(reversal_run, tmp_path, capsys) -> None:
    """The commands: export with int8, then translate and beam-translate the export dir."""
    out = tmp_path / "exported"
    code, stdout, err = run(
        ["-q", "export", str(reversal_run), "--out", str(out), "--quantize", "int8"], capsys
    )
    assert code == 0, err
    assert "(int8)" in stdout
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n\n4 5\n", encoding="utf-8")
    for extra in ([], ["--search", "beam", "--beam-size", "3"]):
        code, stdout, err = run(["translate", str(out), "-i", str(source), *extra], capsys)
        assert code == 0, err
        assert stdout.splitlines()[1] == "" and len(stdout.splitlines()) == 3


def test_int8_translate_process_prints_no_torch_notice(exports: dict[str, Path]) -> None:
    """Loading int8 modules makes torch print a deprecation notice from C++ once per process;
    a fresh process shows that the command keeps stderr clean."""
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", str(exports["int8"])],
        input="1 2 3\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3 2 1\n"
    assert done.stderr == ""


def test_export_errors_are_one_message(reversal_run, exports, tmp_path, capsys) -> None:
    """An existing --out, an export of an export, a tampered model file, a newer format."""
    code, _, err = run(["export", str(reversal_run), "--out", str(exports["float"])], capsys)
    assert code == 1 and "already exists; choose a new --out" in err
    code, _, err = run(["export", str(exports["float"]), "--out", str(tmp_path / "again")], capsys)
    assert code == 1 and "is already an export; export from the training run dir" in err
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n", encoding="utf-8")
    code, _, err = run(
        ["translate", str(exports["float"]), "-i", str(source), "--precision", "int8-output"],
        capsys,
    )
    assert code == 1 and "int8-output needs float output layers, as a run dir's" in err
    assert "seq2seq export --quantize int8" in err and "Traceback" not in err

    copy = tmp_path / "copy"
    copy.mkdir()
    for item in exports["float"].rglob("*"):
        target = copy / item.relative_to(exports["float"])
        if item.is_dir():
            target.mkdir()
        else:
            target.write_bytes(item.read_bytes())
    data = bytearray((copy / GRAPH_FILE).read_bytes())
    data[-100] ^= 0xFF
    (copy / GRAPH_FILE).write_bytes(bytes(data))
    code, _, err = run(["translate", str(copy)], capsys)
    assert code == 1 and "does not match the SHA-256 recorded in bundle.json" in err
    assert "Traceback" not in err

    meta = json.loads((copy / "bundle.json").read_text("utf-8"))
    meta["export"]["format"] = 99
    (copy / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    code, _, err = run(["translate", str(copy)], capsys)
    assert code == 1 and "is an export of format 99 (torchscript)" in err and "upgrade" in err


def test_serve_runs_the_int8_export(exports: dict[str, Path]) -> None:
    """The server loads an export dir: /info names it, greedy and beam answer like translate."""
    from fastapi.testclient import TestClient

    from seq2seq.serve.app import create_app

    loaded = load_run(exports["int8"])
    with TestClient(create_app(loaded)) as client:
        info = client.get("/info").json()
        assert info["export"] == {"runtime": "torchscript", "quantize": "int8"}
        assert info["parameters"] is None
        for search, options in (("greedy", {}), ("beam", {"beam_size": 3})):
            body = client.post(
                "/translate", json={"text": SOURCES[:5], "search": search, **options}
            ).json()
            expected = outputs(exports["int8"], search, **options)[:5]
            assert [t["text"] for t in body["translations"]] == [e[0] for e in expected]


def test_resume_refuses_an_export_dir(exports, tmp_path, capsys) -> None:
    """`train --resume EXPORT_DIR` is one message, and the export is left as it was (it used to
    train a fresh model there and overwrite bundle.json, losing the export section)."""
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(exports["float"], copy)

    def files() -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}

    before = files()
    code, _, err = run(["-q", "train", "--resume", str(copy), "train.max_steps=1"], capsys)
    assert code == 1, err
    assert "is an export dir (seq2seq export), which cannot be trained" in err
    assert "resume the run it was exported from" in err and "Traceback" not in err
    assert files() == before


def test_export_to_an_unwritable_place_is_one_message(reversal_run, tmp_path, capsys) -> None:
    """--out under a file (or on a full disk): one message, no internal error, nothing left."""
    (tmp_path / "blocker").write_text("a file, not a directory", encoding="utf-8")
    out = tmp_path / "blocker" / "export"
    code, _, err = run(["-q", "export", str(reversal_run), "--out", str(out)], capsys)
    assert code == 1, err
    assert err == f"error: cannot write the export to {out}: Not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
