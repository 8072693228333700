"""Training speed of the decoder's parallel (whole-sequence) path against the step-by-step path.

Usage: python bench/decoder_paths.py [--steps 20] [--threads 2] [KEY=VALUE recipe overrides]
Builds the model of recipes/ddtp-de-en.yaml (8k vocabulary) and trains on random batches shaped
like that corpus's (64 sentences × 30 pieces); prints target tokens/s for both paths.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from seq2seq.assemble import build_model
from seq2seq.recipe import load_recipe
from seq2seq.training.loss import sequence_loss

ROOT = Path(__file__).resolve().parents[1]


def tokens_per_second(model, batch, steps: int) -> float:
    """Mean target tokens/s of full training updates (forward, backward, Adam)."""
    src, lengths, tgt = batch
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def update() -> None:
        loss, count = sequence_loss(model(src, lengths, tgt), tgt)
        (loss / count).backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):
        update()
    start = time.perf_counter()
    for _ in range(steps):
        update()
    return tgt.numel() * steps / (time.perf_counter() - start)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(ROOT / "recipes" / "ddtp-de-en.yaml", args.overrides)
    torch.manual_seed(0)
    B, S, T, V = 64, 30, 31, 8000
    batch = (torch.randint(4, V, (B, S)), torch.full((B,), S), torch.randint(4, V, (B, T)))
    model = build_model(recipe.model, V, V)
    parallel = tokens_per_second(model, batch, args.steps)
    model.decoder.forward_sequence = lambda *a: None  # the same model, stepping
    stepped = tokens_per_second(model, batch, args.steps)
    print(f"threads {args.threads}, batch {B}×{T}, vocab {V}, decoder {recipe.model.decoder}")
    print(f"{'path':10s} {'tgt tok/s':>10s}")
    print(f"{'parallel':10s} {parallel:10,.0f}")
    print(f"{'step':10s} {stepped:10,.0f}")
    print(f"speed-up   {parallel / stepped:9.2f}×")


if __name__ == "__main__":
    main()
