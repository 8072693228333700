"""`--workers`: translate and evaluate in forked worker processes, and its user errors."""

from __future__ import annotations

from tests.conftest import run_cli as run


def test_translate_and_evaluate_in_worker_processes_match_one_process(
    trained, tmp_path, capsys
) -> None:
    """--workers 2 (batches of one sentence, so several batches) writes what --workers 0 writes,
    line for line, for translate and evaluate; a bad --workers value is a usage error."""
    run_dir, data = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n\n4 5 6 7\n9 8\n2 2 2 2 2\n", encoding="utf-8")
    outputs = []
    for workers in ("0", "2"):
        args = ["translate", str(run_dir), "-i", str(source), "--batch-size", "1"]
        code, out, err = run([*args, "--search", "beam", "--workers", workers], capsys)
        assert code == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 5
    scores = []
    for workers in ("0", "2"):
        args = ["evaluate", str(run_dir), "--source", str(data / "valid.src")]
        args += ["--reference", str(data / "valid.tgt"), "--batch-size", "3", "--workers", workers]
        code, out, err = run(args, capsys)
        assert code == 0, err
        scores.append(out)
    assert scores[0] == scores[1]
    code, _, err = run(["translate", str(run_dir), "-i", str(source), "--workers", "x"], capsys)
    assert code == 2 and "'x' is not 'auto' or a whole number from 0 to" in err


def test_workers_off_linux_are_one_message(trained, tmp_path, capsys, monkeypatch) -> None:
    """Where processes cannot be forked, --workers 2 says so and auto decodes in process."""
    import seq2seq.workers

    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5\n", encoding="utf-8")
    monkeypatch.setattr(seq2seq.workers, "can_fork", lambda: False)
    code, _, err = run(["translate", str(run_dir), "-i", str(source), "--workers", "2"], capsys)
    assert code == 1 and "--workers 2 needs forked processes (Linux" in err
    code, out, err = run(
        ["translate", str(run_dir), "-i", str(source), "--batch-size", "1"], capsys
    )
    assert code == 0 and len(out.splitlines()) == 2, err
