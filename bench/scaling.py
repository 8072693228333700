"""Scaling on one CPU machine: training throughput of 1 process × 2 threads against 2 processes
× 1 thread (DDP over Gloo, the same global batch; 1 process × 1 thread as the baseline), and
the peak memory of tokenizing a corpus through the cache (Arrow, memory-mapped) against loading
it into Python lists.

Usage:
    python bench/scaling.py throughput [--recipe recipes/demo.yaml] [--steps 60] [KEY=VALUE...]
    python bench/scaling.py memory [--source data/ddtp-summ/train.doc --target ...sum]

throughput reads tokens/s from the run's metrics.jsonl (the first log window, warm-up, is
left out). memory fits the tokenizer once, then measures each way in a fresh process
(peak resident set of the process and of its tokenizing workers).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["train.validation.every=0", "data.valid=null", "train.early_stopping=null"]


def throughput(recipe: str, steps: int, overrides: list[str], work: Path) -> None:
    """Train `steps` updates each way and print tokens/s."""
    every = max(1, steps // 6)
    base = [*COMMON, f"train.max_steps={steps}", f"train.log_every={every}", *overrides]
    ways = {
        "1 process x 1 thread": (["train.threads=1", "train.accumulate=2"], None, "1"),
        "1 process x 2 threads": (["train.threads=2", "train.accumulate=2"], None, "2"),
        "2 processes x 1 thread": (["train.threads=1", "train.accumulate=1"], 2, "1"),
    }
    print("| run | tokens/s |")
    print("|---|---|")
    for name, (keys, nproc, omp) in ways.items():
        out = work / name.replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "seq2seq", "--quiet", "train", recipe, "--out", str(out)]
        command += ["--device", "cpu", *base, *keys]
        if nproc:
            command += ["--nproc", str(nproc)]
        env = dict(os.environ, OMP_NUM_THREADS=omp)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        windows = [r for r in rows if r["split"] == "train"][1:]
        rate = sum(r["tok_per_s"] for r in windows) / max(len(windows), 1)
        print(f"| {name} | {rate:,.0f} |")


def memory(source: str, target: str, tokenizer: str, work: Path) -> None:
    """Fit the tokenizer once, then tokenize the corpus each way in a fresh process."""
    model = work / "tokenizer.bin"
    if not model.exists():
        _run_worker("fit", source, target, tokenizer, work)
    print("| way | peak RSS, MB | above the imports, MB | tokenizing workers, MB | pairs |")
    print("|---|---|---|---|---|")
    for way in ("lists", "cache-build", "cache-load"):
        if way == "cache-build":
            shutil.rmtree(work / "cache", ignore_errors=True)
        print(_run_worker(way, source, target, tokenizer, work))


def _run_worker(way: str, source: str, target: str, tokenizer: str, work: Path) -> str:
    command = [sys.executable, __file__, "_worker", way, source, target, tokenizer, str(work)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{way} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def _worker(way: str, source: str, target: str, tokenizer: str, work: Path) -> None:
    """One measurement in this (fresh) process."""
    import datasets  # noqa: F401 - every way starts from the same imports

    from seq2seq import registry
    from seq2seq.data import cache
    from seq2seq.data.dataset import encode_pairs, read_corpus
    from seq2seq.recipe import Corpus

    corpus = Corpus(source=source, target=target)
    spec = (
        {"type": "sentencepiece", "vocab_size": 8000} if tokenizer == "sentencepiece" else tokenizer
    )
    joint = registry.build("tokenizer", spec, where="tokenizer")
    if way == "fit":
        table = cache.raw_pairs(corpus, "corpus", work / "raw")
        joint.fit(
            itertools.chain(cache.text_lines(table, "source"), cache.text_lines(table, "target"))
        )
        (work / "tokenizer.bin").write_bytes(joint.to_bytes())
        return
    joint.load_bytes((work / "tokenizer.bin").read_bytes())
    tokenizers = {"source": joint, "target": joint}
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if way == "lists":
        src, tgt = read_corpus(corpus, "corpus")
        examples, _ = encode_pairs(src, tgt, joint, joint, 3, 200)
        count = len(examples)
    else:
        path = work / "cache" / "pairs"
        if way == "cache-build":
            raw = cache.RawCorpus(work / "cache", corpus, "corpus")
            cache.build_examples(path, raw, cache.Encoder(tokenizers, 3, 200, "corpus"), None)
            raw.close()
        loaded = cache.CachedExamples(path)
        loaded.lengths()
        count = len(loaded)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"| {way} | {own} | {own - start} | {children} | {count:,} |")


def main() -> None:
    """Parse the command line and run one benchmark."""
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(*sys.argv[2:6], Path(sys.argv[6]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["throughput", "memory"])
    parser.add_argument("--recipe", default="recipes/demo.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--source", default="data/ddtp-summ/train.doc")
    parser.add_argument("--target", default="data/ddtp-summ/train.sum")
    parser.add_argument("--tokenizer", default="sentencepiece")
    parser.add_argument("--work", help="scratch folder (default: a temporary one)")
    args, overrides = parser.parse_known_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seq2seq-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "throughput":
        throughput(args.recipe, args.steps, overrides, work)
    else:
        memory(args.source, args.target, args.tokenizer, work)


if __name__ == "__main__":
    main()
