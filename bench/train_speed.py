"""Training throughput of seq2seq on the matched setup: target and source tokens/s, time per epoch,
peak RSS, in fp32, under bf16 autocast, with bf16 products in the output layer alone, and in
every product over whole sequences.

Usage: python bench/train_speed.py [--precision fp32|bf16|bf16-output|bf16-products|both|all]
       [--seconds 120] [--warmup 30] [--threads 2] [--recipe recipes/bench-matched.yaml]
       [KEY=VALUE ...]
Each precision runs in its own process (so each peak RSS is its own). Real updates (forward with
the fused loss, backward, clipping, the recipe's optimizer: what the trainer does) on the real
corpus in the recipe's batch order; the rate is the median
over windows of `--window` updates after `--warmup` updates, real (non-pad) tokens with </s>.
Time per epoch = target tokens of one epoch ÷ that rate (extrapolated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.measure import ROOT, fmt, machine, median_after, table, thread_env
from seq2seq import registry
from seq2seq.assemble import build_model
from seq2seq.data.batching import Batch, make_batch, token_batches
from seq2seq.model import Seq2Seq
from seq2seq.recipe import Recipe, load_recipe
from seq2seq.training.prepare import prepare
from seq2seq.training.run import seed_everything
from seq2seq.training.update import (
    autocast_dtype,
    output_dtype,
    precision_scope,
    products_dtype,
)

RECIPE = ROOT / "recipes" / "bench-matched.yaml"


def precision_context(precision: str) -> contextlib.AbstractContextManager[None]:
    """The trainer's scope for `precision` (a train.precision value) on the CPU."""
    cpu = torch.device("cpu")
    return precision_scope(
        "cpu",
        autocast_dtype(precision, cpu),
        output_dtype(precision, cpu),
        products_dtype(precision, cpu),
    )


def updater(recipe: Recipe, model: Seq2Seq) -> Callable[[Batch], int]:
    """One training update as the trainer makes it: forward with the fused loss, backward,
    clipping, the recipe's optimizer; returns the real target tokens."""
    cfg = recipe.train
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = registry.build("optimizer", cfg.optimizer, where="train", params=params, lr=cfg.lr)
    limit = cfg.clip_grad_norm if cfg.clip_grad_norm is not None else math.inf

    def update(batch: Batch) -> int:
        assert batch.tgt_in is not None and batch.tgt_out is not None
        output = model.run(
            batch.src,
            batch.src_lengths,
            batch.tgt_in,
            targets=batch.tgt_out,
            label_smoothing=cfg.label_smoothing,
        )
        assert output.loss is not None
        tokens = int((batch.tgt_out != model.specials.pad).sum())
        optimizer.zero_grad(set_to_none=True)
        (output.loss / tokens).backward()
        torch.nn.utils.clip_grad_norm_(params, limit)
        optimizer.step()
        return tokens

    return update


def measure(args: argparse.Namespace) -> dict[str, float | str | None]:
    """Train for `args.seconds` after warm-up; windows of target/source tokens per second."""
    torch.set_num_threads(args.threads)
    recipe = load_recipe(Path(args.recipe), args.overrides)
    seed_everything(recipe.seed)
    data = prepare(recipe)
    src_len = [len(s) for s in data.train.source]
    tgt_len = [len(t) + 1 for t in data.train.target]  # + </s>, as the loss counts it
    tok = data.tokenizers
    model = build_model(recipe.model, tok["source"].vocab_size, tok["target"].vocab_size).train()
    update = updater(recipe, model)
    batches = token_batches(src_len, tgt_len, recipe.train.batch_tokens, recipe.seed, 0)
    tgt_windows: list[tuple[int, float]] = []
    src_windows: list[tuple[int, float]] = []
    step, src, tgt = 0, 0, 0
    window_start = started = time.perf_counter()
    with precision_context(args.precision):
        while True:
            indices = batches[step % len(batches)]
            tgt += update(make_batch(data.train.source, data.train.target, indices))
            src += sum(src_len[i] for i in indices)
            step += 1
            if step % args.window == 0:
                now = time.perf_counter()
                tgt_windows.append((step - args.window, tgt / (now - window_start)))
                src_windows.append((step - args.window, src / (now - window_start)))
                window_start, src, tgt = now, 0, 0
                if step >= args.warmup + args.window and now - started >= args.seconds:
                    break
    rate = median_after(tgt_windows, args.warmup - 1)
    return {
        "system": "seq2seq",
        "precision": args.precision,
        "tgt_tok_s": rate,
        "src_tok_s": median_after(src_windows, args.warmup - 1),
        "epoch_min": sum(tgt_len) / rate / 60 if rate else None,
        "steps": step,
        "tgt_per_batch": sum(tgt_len) / len(batches),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(args: argparse.Namespace, precision: str) -> dict[str, float | str | None]:
    """Measure one precision in a fresh process and read its JSON line."""
    command = [sys.executable, __file__, "--json", "--precision", precision]
    for name in ("seconds", "warmup", "window", "threads", "recipe"):
        command += [f"--{name}", str(getattr(args, name))]
    out = subprocess.run(
        command + list(args.overrides),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **thread_env(args.threads)},
    )
    result: dict[str, float | str | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


ROW_HEADER = [
    "system",
    "precision",
    "tgt tok/s",
    "src tok/s",
    "epoch (min, extrapolated)",
    "peak RSS (MiB)",
]


def row(result: dict[str, float | str | None]) -> list[str]:
    """A table row for one result."""

    def num(key: str, digits: int = 0) -> str:
        value = result.get(key)
        return fmt(float(value), digits) if isinstance(value, int | float) else "–"

    return [
        str(result["system"]),
        str(result.get("precision", "fp32")),
        num("tgt_tok_s"),
        num("src_tok_s"),
        num("epoch_min", 1),
        num("peak_rss_mib"),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "bf16-output", "bf16-products", "both", "all"],
        default="both",
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="measuring time after warm-up")
    parser.add_argument("--warmup", type=int, default=30, help="updates not counted")
    parser.add_argument("--window", type=int, default=10, help="updates per rate window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--json", action="store_true", help="print one JSON line (for run_all)")
    parser.add_argument("overrides", nargs="*", help="recipe KEY=VALUE overrides")
    return parser.parse_args(argv)


def main() -> None:
    """Print the table (or one JSON line with --json)."""
    args = parse_args()
    if args.json:
        print(json.dumps(measure(args)))
        return
    precisions = {
        "both": ["fp32", "bf16"],
        "all": ["fp32", "bf16", "bf16-output", "bf16-products"],
    }.get(args.precision, [args.precision])
    results = [run_child(args, p) for p in precisions]
    print(f"machine: {machine()}; {args.threads} threads")
    print(table(ROW_HEADER, [row(r) for r in results]))
    for r in results:
        print(
            f"{r['precision']}: {r['steps']} updates, {r['tgt_per_batch']:.0f} target tokens/batch"
        )


if __name__ == "__main__":
    main()
