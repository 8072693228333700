"""Decoding speed and quality of a trained run: greedy and beam on a test set.

Usage: python bench/decode_speed.py RUN_DIR SOURCE REFERENCE [--batch-size 64] [--threads 2]
       [--beam-size 5] [--metrics bleu,chrf] [--in-process] [--save DIR]
       [--precision fp32|int8-output]
By default each search runs as `seq2seq translate` processes, timed as the peers are: wall time
with start-up (imports, model load) included, and excluded (minus the wall time of translating
the first line alone); peak RSS of that process. --in-process times the search inside this
process instead (model already loaded) and scores more metrics (e.g. ROUGE for summaries).
"""

from __future__ import annotations

import argparse
import compileall
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.measure import (
    ROOT,
    Timed,
    fmt,
    machine,
    read_text,
    run_timed,
    score,
    table,
    thread_env,
    time_decoding,
)
from seq2seq.bundle import load_run
from seq2seq.cli.options import PRECISION_CHOICES, apply_precision
from seq2seq.inference import translate_texts
from seq2seq.metrics.score import score_all
from seq2seq.registry import build


def translate_command(
    run_dir: Path, search: str, beam: int, batch: int, precision: str = "fp32"
) -> list[str]:
    """The `seq2seq translate` command line (the best checkpoint, else the latest)."""
    command = [sys.executable, "-m", "seq2seq", "translate", str(run_dir), "--search", search]
    command += ["--batch-size", str(batch), "--max-length", "250", "--checkpoint", "best"]
    command += ["--precision", precision]
    return command + (["--beam-size", str(beam)] if search == "beam" else [])


def decode_cli(
    run_dir: Path,
    source: Path,
    output: Path,
    beam: int,
    batch: int,
    threads: int,
    precision: str = "fp32",
) -> dict[str, float | None]:
    """Time `seq2seq translate` (greedy when beam is 1) the way the peers are timed."""
    search = "greedy" if beam == 1 else "beam"
    byte_compile()

    def decode(src: Path, out: Path) -> Timed:
        command = translate_command(run_dir, search, beam, batch, precision)
        command += ["-i", str(src), "-o", str(out)]
        return run_timed(command, log=out.with_suffix(".log"), env=thread_env(threads))

    return time_decoding(decode, source, output)


def byte_compile() -> None:
    """Write the package's .pyc files, as pip did when it installed the peers (and torch). An
    editable install where PYTHONDONTWRITEBYTECODE=1 (as on the benchmark machine) would compile
    every module again at each start: 1.60 s against 1.52 for one line (8 interleaved pairs)."""
    compileall.compile_dir(ROOT / "seq2seq", quiet=1)


def in_process(args: argparse.Namespace) -> None:
    """Decode inside this process (model loaded once) and print sent/s and metrics."""
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir)  # the best checkpoint, else the latest
    apply_precision(loaded.model, args.precision)
    sources = read_text(Path(args.source))
    references = read_text(Path(args.reference))
    metrics = args.metrics.split(",")
    print(
        f"{'search':8s} {'sent/s':>8s} {'seconds':>8s}  " + "  ".join(f"{m:>8s}" for m in metrics)
    )
    for beam in (1, args.beam_size):
        spec = {"type": "greedy", "max_length": 250}
        if beam > 1:
            spec = {"type": "beam", "beam_size": beam, "max_length": 250}
        start = time.perf_counter()
        hyps = translate_texts(
            loaded, build("search", spec, where="search"), sources, args.batch_size
        )
        seconds = time.perf_counter() - start
        values = "  ".join(f"{s.value:8.2f}" for s in score_all(metrics, hyps, references))
        print(f"{spec['type']:8s} {len(sources) / seconds:8.1f} {seconds:8.1f}  {values}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


HEADER = ["search", "sent/s (incl. start-up)", "sent/s (excl.)", "wall s", "start-up s"]
HEADER += ["peak RSS MiB", "BLEU", "chrF", "output ÷ ref length"]


def main() -> None:
    """Print one table row per search."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("source")
    parser.add_argument("reference")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--metrics", default="bleu,chrf", help="with --in-process")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32")
    parser.add_argument("--save", help="folder for the hypotheses (default: a temporary one)")
    args = parser.parse_args()
    print(f"{args.run_dir}: batch {args.batch_size}, {args.threads} threads; {machine()}")
    if args.in_process:
        in_process(args)
        return
    refs = read_text(Path(args.reference))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.save or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for beam in (1, args.beam_size):
            out = folder / f"beam{beam}.txt"
            timing = decode_cli(
                Path(args.run_dir),
                Path(args.source),
                out,
                beam,
                args.batch_size,
                args.threads,
                args.precision,
            )
            scores = score(read_text(out), refs)
            rows.append(
                [
                    "greedy" if beam == 1 else f"beam {beam}",
                    fmt(timing["sent_s"], 1),
                    fmt(timing["sent_s_excl"], 1),
                    fmt(timing["wall"], 1),
                    fmt(timing["startup"], 1),
                    fmt(timing["peak_rss_mib"]),
                    fmt(scores["bleu"], 2),
                    fmt(scores["chrf"], 2),
                    fmt(scores["length"], 2),
                ]
            )
    print(table(HEADER, rows))


if __name__ == "__main__":
    main()
