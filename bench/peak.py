"""The machine's matmul peak in fp32 and bf16, the matched model's training FLOPs per target
token (counted analytically), and the achieved fraction of the peak.

Usage: python bench/peak.py [--threads 2] [--size 2048]
       [--tok-s FP32_RATE [BF16_RATE [BF16_OUTPUT_RATE [BF16_PRODUCTS_RATE]]]] [--seconds 60]
       (a rate given as - was not measured)
       [--work ../peers-work]
Without --tok-s the rates come from bench/train_speed.py (one child per precision).
bf16-output (the output layer's products in bf16, the rest in fp32) is held to the peak of that
mix: the time the bf16 peak takes for the output projection's FLOPs plus the fp32 peak's for
the rest; bf16-products likewise, with every part it runs in bf16 (`LOW_PARTS`) on the bf16 side.
FLOPs count multiply-adds as 2; training = 3 × forward (backward ≈ 2 × forward); only real
tokens count (padding is overhead, as in the usual "model FLOPs utilisation").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import train_speed
from bench.measure import fmt, machine, read_text, table
from bench.peers import prepare_data

PRECISIONS = ("fp32", "bf16", "bf16-output", "bf16-products")
# the share of each part's training FLOPs that each low-precision mix runs in bf16 (the rest
# in float32); of a recurrence's three products (forward, the state's gradient, W_hh's
# gradient) bf16-products lowers the last, which is one product over all steps
LOW_PARTS: dict[str, dict[str, float]] = {
    "bf16-output": {"output projection": 1.0},
    "bf16-products": {
        "encoder input gates": 1.0,
        "encoder recurrence": 1 / 3,
        "attention keys": 1.0,
        "decoder input gates": 1.0,
        "decoder recurrence": 1 / 3,
        "attention query": 1.0,
        "attentional layer": 1.0,
        "output projection": 1.0,
    },
}


def matmul_peak(size: int, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best FLOP/s of (size × size) @ (size × size) products over about `seconds`."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    start = time.perf_counter()
    torch.mm(a, b)  # warm-up: allocations, kernel selection
    first = time.perf_counter() - start
    best, end = 2 * size**3 / first, time.perf_counter() + seconds
    if first > seconds:  # a slow dtype (no hardware support): one product is the measurement
        return best
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def mean_lengths(data: Path, max_length: int = 100) -> tuple[float, float]:
    """Source tokens per target token, and the source length each target token attends over."""
    src_total = tgt_total = attended = 0
    for s, t in zip(read_text(data / "train.sp.en"), read_text(data / "train.sp.de"), strict=True):
        ls, lt = len(s.split()) + 1, len(t.split()) + 1  # + </s>
        if 1 < ls <= max_length + 1 and 1 < lt <= max_length + 1:
            src_total, tgt_total, attended = src_total + ls, tgt_total + lt, attended + ls * lt
    return src_total / tgt_total, attended / tgt_total


def flops_per_target_token(src_per_tgt: float, attended: float, vocab: int = 8000) -> dict:
    """Forward FLOPs of the matched model per target token, by part, and training's total."""
    E, h, H, A, M = 256, 128, 256, 256, 256  # embeddings, encoder per direction, decoder, attn
    parts = {
        "encoder input gates": 2 * 3 * E * h * 2 * src_per_tgt,  # two directions
        "encoder recurrence": 2 * 3 * h * h * 2 * src_per_tgt,
        "attention keys": 2 * M * A * src_per_tgt,
        "decoder input gates": 2 * 3 * E * H,
        "decoder recurrence": 2 * 3 * H * H,
        "attention query": 2 * H * A,
        "attention scores + context": attended * (2 * A + 2 * M),
        "attentional layer": 2 * (M + H) * H,
        "output projection": 2 * H * vocab,
        "softmax + loss": 5 * vocab,
    }
    parts["forward total"] = sum(parts.values())
    parts["training (3 × forward)"] = 3 * parts["forward total"]
    return parts


def parse_rate(value: str) -> float | None:
    """A --tok-s value: tokens/s, or None for `-` (not measured)."""
    return None if value == "-" else float(value)


def main() -> None:
    """Print the peaks, the FLOP count and the achieved fractions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument(
        "--tok-s",
        type=parse_rate,
        nargs="+",
        help="fp32 [bf16 [bf16-output [bf16-products]]] target tokens/s; - for one not measured",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="train_speed measuring time")
    parser.add_argument("--work", default=str(prepare_data.default_work()))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peaks = {
        "fp32": matmul_peak(args.size, torch.float32),
        "bf16": matmul_peak(args.size, torch.bfloat16),
    }
    data = Path(args.work) / "data"
    prepare_data.segment(prepare_data.train_model(data), data)
    src_per_tgt, attended = mean_lengths(data)
    parts = flops_per_target_token(src_per_tgt, attended)
    per_token = parts["training (3 × forward)"]
    for mix, low_parts in LOW_PARTS.items():
        share = sum(parts[name] * part for name, part in low_parts.items()) / parts["forward total"]
        peaks[mix] = 1 / (share / peaks["bf16"] + (1 - share) / peaks["fp32"])
    if args.tok_s:
        pairs = zip(PRECISIONS, args.tok_s, strict=False)
        rates = {precision: rate for precision, rate in pairs if rate is not None}
    else:
        options = train_speed.parse_args(
            ["--seconds", str(args.seconds), "--threads", str(args.threads)]
        )
        rates = {p: train_speed.run_child(options, p)["tgt_tok_s"] for p in PRECISIONS}
    print(f"machine: {machine()}; {args.threads} threads; {args.size}² matmuls")
    print(
        f"mean source tokens per target token {src_per_tgt:.3f}; "
        f"source positions attended per target token {attended:.1f}"
    )
    print(table(["part", "MFLOP / target token"], [[k, fmt(v / 1e6, 2)] for k, v in parts.items()]))
    print()
    rows = []
    for precision, peak in peaks.items():
        rate = rates.get(precision)
        achieved = None if rate is None else float(rate) * per_token
        rows.append(
            [
                precision,
                fmt(peak / 1e9, 1),
                fmt(rate),
                fmt(None if achieved is None else achieved / 1e9, 1),
                share_of_peak(achieved, peak),
            ]
        )
    print(
        table(
            ["dtype", "matmul peak GFLOP/s", "train tgt tok/s", "achieved GFLOP/s", "of peak"], rows
        )
    )
    for line in peer_targets(Path(args.work), per_token, peaks):
        print(line)


def share_of_peak(achieved: float | None, peak: float) -> str:
    """Achieved ÷ peak; a "peak" below the achieved rate measured a slow fallback kernel (bf16
    without bf16 units), not the hardware, and is not a ratio worth printing."""
    if achieved is None:
        return "–"
    if achieved > peak:
        return "n/a (the large product is slower than training: a fallback kernel)"
    return f"{100 * achieved / peak:.0f}%"


def peer_targets(work: Path, per_token: float, peaks: dict[str, float]) -> list[str]:
    """What 3× each peer's training rate (from the last `run_all.py --table train`) would take."""
    results = work / "results-train.json"
    if not results.exists():
        return []
    lines = []
    for row in json.loads(results.read_text(encoding="utf-8")):
        if row["system"] == "seq2seq" or not row.get("tgt_tok_s"):
            continue
        needed = 3 * row["tgt_tok_s"] * per_token
        # bf16 autocast is left out: here it trains slower than bf16-output
        mixes = ("fp32", "bf16-output", "bf16-products")
        shares = ", ".join(f"{100 * needed / peaks[p]:.0f}% of {p}'s" for p in mixes)
        lines.append(
            f"- 3 × {row['system']} ({fmt(row['tgt_tok_s'])} tgt tok/s) would need "
            f"{needed / 1e9:.1f} GFLOP/s: {shares} peak"
        )
    return lines


if __name__ == "__main__":
    main()
