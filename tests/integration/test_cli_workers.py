"""`--workers`: translate and evaluate in forked worker processes, and its user errors."""

from __future__ import annotations

import json

import torch

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


def test_int8_output_reaches_the_workers_and_keeps_the_learned_task(
    reversal_run, tmp_path, capsys
) -> None:
    """--precision int8-output: the forked workers decode with it (their scores equal one
    process's and differ from float's), the model reverses about as many strings as in float
    and mostly writes the same, and evaluate takes the option too."""
    from tests.conftest import reversal_pairs

    pairs = reversal_pairs(40, seed=7, max_len=6)
    source = tmp_path / "in.txt"
    source.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    records = {}
    for precision, workers in [("fp32", "0"), ("int8-output", "0"), ("int8-output", "2")]:
        args = ["translate", str(reversal_run), "-i", str(source), "--batch-size", "4"]
        args += ["--precision", precision, "--workers", workers, "--output-format", "jsonl"]
        code, out, err = run(args, capsys)
        assert code == 0, err
        records[precision, workers] = [json.loads(line) for line in out.splitlines()]
    scores = {
        key: torch.tensor([r["hypotheses"][0]["score"] for r in found])
        for key, found in records.items()
    }
    texts = {key: [r["hypotheses"][0]["text"] for r in found] for key, found in records.items()}
    # workers run one thread, this process several: the float parts may round apart
    assert texts["int8-output", "0"] == texts["int8-output", "2"]
    assert torch.allclose(scores["int8-output", "0"], scores["int8-output", "2"], atol=1e-4)
    # the fixture model is confident (scores near 0), so int8's change is small but far above
    # float rounding, which is all that fp32 in workers would differ by
    precision_gap = (scores["fp32", "0"] - scores["int8-output", "2"]).abs().max()
    process_gap = (scores["int8-output", "0"] - scores["int8-output", "2"]).abs().max()
    assert precision_gap > max(1e-6, 10 * process_gap), (precision_gap, process_gap)
    targets = [t for _, t in pairs]
    right = {k: sum(map(str.__eq__, out, targets)) for k, out in texts.items()}
    agree = sum(a == b for a, b in zip(texts["fp32", "0"], texts["int8-output", "2"], strict=True))
    assert right["fp32", "0"] >= 20  # the fixture model has learned the task
    assert right["int8-output", "2"] >= right["fp32", "0"] - 4 and agree >= 34, (right, agree)
    reference = tmp_path / "ref.txt"
    reference.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    args = ["evaluate", str(reversal_run), "--source", str(source), "--reference", str(reference)]
    code, out, err = run([*args, "--precision", "int8-output"], capsys)
    assert code == 0 and "bleu " in out, err
