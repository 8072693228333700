"""Decoding speed and quality of a trained run: greedy and beam 5 on a test set.

Usage: python bench/decode_speed.py RUN_DIR SOURCE REFERENCE [--batch-size 64] [--threads 2]
       [--beam-size 5] [--metrics bleu,chrf]
Prints sentences/s and wall time of decoding (model already loaded), the scores, and the peak
resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from seq2seq.bundle import load_run
from seq2seq.data.dataset import read_lines
from seq2seq.inference import translate_texts
from seq2seq.metrics.score import score_all
from seq2seq.registry import build


def main() -> None:
    """Decode with each search and print one table row per search."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("source")
    parser.add_argument("reference")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--metrics", default="bleu,chrf")
    parser.add_argument("--save", help="folder for the hypotheses (one file per search)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir)
    sources = read_lines(Path(args.source), "source")
    references = read_lines(Path(args.reference), "reference")
    metrics = args.metrics.split(",")
    base = loaded.recipe.search
    max_length = 250 if isinstance(base, str) else int(base.get("max_length", 250))
    searches = {
        "greedy": {"type": "greedy", "max_length": max_length},
        f"beam{args.beam_size}": {
            "type": "beam",
            "beam_size": args.beam_size,
            "max_length": max_length,
        },
    }
    if not isinstance(base, str) and base.get("type") == "beam":
        searches["recipe"] = base
    print(
        f"{args.run_dir}: {len(sources)} sentences, batch {args.batch_size}, "
        f"{args.threads} threads, checkpoint {loaded.checkpoint.name}"
    )
    print(
        f"{'search':8s} {'sent/s':>8s} {'seconds':>8s}  " + "  ".join(f"{m:>8s}" for m in metrics)
    )
    for name, spec in searches.items():
        search = build("search", spec, where="search")
        start = time.perf_counter()
        hyps = translate_texts(loaded, search, sources, args.batch_size)
        seconds = time.perf_counter() - start
        scores = score_all(metrics, hyps, references)
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            (Path(args.save) / f"{name}.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        values = "  ".join(f"{s.value:8.2f}" for s in scores)
        print(f"{name:8s} {len(sources) / seconds:8.1f} {seconds:8.1f}  {values}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB; signatures: " + "; ".join(s.signature for s in scores))


if __name__ == "__main__":
    main()
