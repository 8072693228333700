"""Quality after a wall-clock training budget: train the matched recipe for M minutes, then
BLEU and chrF (sacrebleu defaults) of greedy and beam-5 decoding of the test set.

Usage: python bench/quality.py [--minutes 20] [--out ../peers-work/seq2seq/quality]
       [--threads 2] [--test-lines N] [KEY=VALUE ...]
The budget is the training process's wall clock, start-up included (the peers get the same
budget). The tokenized corpus and the fitted sentencepiece model are cached next to the run
(`data.cache_dir`), so only the first run pays for them, as the peers' pieces are made once.
At the budget the process gets SIGINT, saves a checkpoint at the end of the current update and
exits.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.decode_speed import decode_cli
from bench.measure import (
    DATA,
    ROOT,
    Timed,
    fmt,
    read_text,
    run_timed,
    score,
    table,
    thread_env,
)

RECIPE = ROOT / "recipes" / "bench-matched.yaml"


def train_for(run: Path, minutes: float, threads: int, overrides: list[str]) -> Timed:
    """Train a fresh run dir for `minutes` of wall clock."""
    if run.exists():
        shutil.rmtree(run)
    run.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "seq2seq", "train", str(RECIPE), "--out", str(run)]
    # the tokenized-corpus cache: a rerun neither refits sentencepiece nor re-tokenizes (the
    # peers' pieces are also made once, before their budgets)
    command += [f"train.threads={threads}", f"data.cache_dir={run.parent / 'cache'}", *overrides]
    return run_timed(
        command,
        budget=minutes * 60,
        log=run.parent / f"{run.name}.log",
        env=thread_env(threads),
        cwd=ROOT,
    )


def steps_done(run: Path) -> int | None:
    """The step of the latest checkpoint."""
    pointer = run / "checkpoints" / "latest.json"
    return int(json.loads(pointer.read_text())["step"]) if pointer.exists() else None


def test_files(folder: Path, lines: int | None) -> tuple[Path, Path]:
    """test.en/test.de, or their first `lines` lines copied into `folder`."""
    if lines is None:
        return DATA / "test.en", DATA / "test.de"
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        (folder / f"test.{lang}").write_text(
            "\n".join(read_text(DATA / f"test.{lang}")[:lines]) + "\n", encoding="utf-8"
        )
    return folder / "test.en", folder / "test.de"


def evaluate(
    run: Path, source: Path, reference: Path, threads: int, precision: str = "fp32"
) -> dict[str, dict]:
    """Greedy and beam-5 decoding of `source` (`--precision`): timings and scores."""
    results = {}
    tag = "" if precision == "fp32" else f".{precision}"
    for beam in (1, 5):
        out = run.parent / f"{run.name}-test{tag}.beam{beam}.txt"
        timing = decode_cli(run, source, out, beam, 64, threads, precision)
        results[f"beam{beam}"] = {**timing, **score(read_text(out), read_text(reference))}
    return results


def main() -> None:
    """Train, decode, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT.parent / "peers-work" / "seq2seq" / "quality"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-lines", type=int)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run = Path(args.out).resolve()
    timed = train_for(run, args.minutes, args.threads, args.overrides)
    source, reference = test_files(run.parent / "test-slice", args.test_lines)
    results = evaluate(run, source, reference, args.threads)
    print(
        f"trained {steps_done(run)} updates in {timed.wall / 60:.1f} min, peak RSS "
        f"{timed.peak_rss_mib:.0f} MiB"
    )
    rows = [
        [name, fmt(r["bleu"], 2), fmt(r["chrf"], 2), fmt(r["length"], 2)]
        for name, r in results.items()
    ]
    print(table(["search", "BLEU", "chrF", "output ÷ ref length"], rows))


if __name__ == "__main__":
    main()
