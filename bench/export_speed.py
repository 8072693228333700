"""Exported models against the run they came from: float eager, exported float, exported int8.

Usage: python bench/export_speed.py RUN_DIR SOURCE REFERENCE [--limit 200] [--threads 1]
       [--batch-size 64] [--beam-size 5] [--exports DIR]
Exports RUN_DIR twice (float and --quantize int8; into a temporary folder unless --exports),
then decodes the first --limit sentences of SOURCE with greedy and beam search in each form and
prints sentences/s, BLEU and chrF, the share of outputs equal to the eager model's, and the size
of each model file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from seq2seq.bundle import Loaded, load_run
from seq2seq.data.dataset import read_lines
from seq2seq.export.traced import GRAPH_FILE
from seq2seq.export.write import export_run
from seq2seq.inference import translate_texts
from seq2seq.metrics.score import score_all
from seq2seq.registry import build


def decode(loaded: Loaded, spec: dict, sources: list[str], batch_size: int) -> tuple[list, float]:
    """Hypotheses and sentences/s (after one warm-up batch)."""
    search = build("search", spec, where="search")
    translate_texts(loaded, search, sources[:batch_size], batch_size)
    start = time.perf_counter()
    hyps = translate_texts(loaded, search, sources, batch_size)
    return hyps, len(sources) / (time.perf_counter() - start)


def main() -> None:
    """Export, decode each way, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("source")
    parser.add_argument("reference")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--exports", help="folder for the two exports (default: temporary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = read_lines(Path(args.source), "source")[: args.limit]
    references = read_lines(Path(args.reference), "reference")[: args.limit]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.exports or scratch)
        start = time.perf_counter()
        models = {
            "eager": (load_run(args.run_dir), None),
            "float": (load_run(export_run(args.run_dir, folder / "float")), folder / "float"),
            "int8": (load_run(export_run(args.run_dir, folder / "int8", "int8")), folder / "int8"),
        }
        print(f"exported twice in {time.perf_counter() - start:.0f} s")
        searches = {
            "greedy": {"type": "greedy"},
            f"beam{args.beam_size}": {"type": "beam", "beam_size": args.beam_size},
        }
        print(
            f"{args.run_dir}: {len(sources)} sentences, batch {args.batch_size}, "
            f"{args.threads} threads, torch {torch.__version__}"
        )
        print(f"{'model':6s} {'search':7s} {'sent/s':>7s} {'BLEU':>6s} {'chrF':>6s} {'=eager':>7s}")
        for search_name, spec in searches.items():
            baseline: list[str] = []
            for name, (loaded, _) in models.items():
                hyps, speed = decode(loaded, spec, sources, args.batch_size)
                baseline = baseline or hyps
                bleu, chrf = score_all(["bleu", "chrf"], hyps, references)
                same = sum(a == b for a, b in zip(hyps, baseline, strict=True)) / len(hyps)
                print(
                    f"{name:6s} {search_name:7s} {speed:7.1f} {bleu.value:6.2f} "
                    f"{chrf.value:6.2f} {same:7.1%}"
                )
        for name, (loaded, directory) in models.items():
            path = directory / GRAPH_FILE if directory else loaded.checkpoint / "model.safetensors"
            print(f"{name}: {path.name} {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
