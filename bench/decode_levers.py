"""A/B of decoding levers in one process on a trained run: variants interleaved round by round,
median sentences/s per variant, and whether each gives the same output as the first.

Usage: python bench/decode_levers.py RUN_DIR SOURCE [--lines 128] [--rounds 3] [--threads 1]
       [--beam-size 5]
  before    additive attention as vᵀ tanh(h), every state tensor reordered at each beam step
  reorder   + beams reorder only their own state (memory, mask and keys stay)
  sigmoid   + scores as 2 vᵀ σ(2h) (softmax-equal to the tanh form)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.measure import machine, read_text, table
from seq2seq.bundle import load_run
from seq2seq.inference import decode_ids
from seq2seq.modules.attention import as_steps, attend, from_steps
from seq2seq.modules.attention.additive import AdditiveAttention
from seq2seq.modules.protocols import DecoderState
from seq2seq.registry import build


def tanh_prepare(self: AdditiveAttention, memory: Tensor) -> Tensor:
    """The keys before the σ form."""
    return self.key_proj(memory)


def tanh_forward(
    self: AdditiveAttention,
    query: Tensor,
    keys: Tensor,
    memory: Tensor,
    mask: Tensor,
    history: object = None,
) -> tuple[Tensor, Tensor]:
    """The additive score as it was: vᵀ tanh(W q + U k)."""
    query, single = as_steps(query)
    hidden = self.query_proj(query)[:, :, None, :] + keys[:, None, :, :]
    scores = self.energy(torch.tanh(hidden)).squeeze(-1)
    return from_steps(*attend(scores, memory, mask), single)


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Patch the code back to what it was before the levers after `name`."""
    saved = (
        AdditiveAttention.prepare,
        AdditiveAttention.forward,
        DecoderState.reorder_beams,
        DecoderState.select,
    )
    if name in ("before", "reorder"):
        AdditiveAttention.prepare = tanh_prepare  # type: ignore[method-assign]
        AdditiveAttention.forward = tanh_forward  # type: ignore[method-assign]
    if name == "before":
        only_beams = saved[2]

        def every_tensor(state: DecoderState, index: Tensor) -> DecoderState:
            moved = only_beams(state, index)
            moved.memory, moved.mask = state.memory[index], state.mask[index]
            moved.keys = None if state.keys is None else state.keys[index]
            return moved

        DecoderState.reorder_beams = every_tensor  # type: ignore[method-assign]
        DecoderState.select = every_tensor  # type: ignore[method-assign]
    try:
        yield
    finally:
        AdditiveAttention.prepare, AdditiveAttention.forward = saved[:2]
        DecoderState.reorder_beams, DecoderState.select = saved[2:]


def main() -> None:
    """Print median sentences/s per variant and searches."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("source")
    parser.add_argument("--lines", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam-size", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir, "latest")
    lines = read_text(Path(args.source))[: args.lines]
    sources = [[*ids, 3] for ids in loaded.tokenizers["source"].encode(lines)]
    searches = {
        "greedy": build("search", {"type": "greedy", "max_length": 250}, where="search"),
        f"beam{args.beam_size}": build(
            "search",
            {"type": "beam", "beam_size": args.beam_size, "max_length": 250},
            where="search",
        ),
    }
    names = ["before", "reorder", "sigmoid"]
    rows = []
    for label, search in searches.items():
        rates: dict[str, list[float]] = {n: [] for n in names}
        outputs: dict[str, list[list[int]]] = {}
        for _ in range(args.rounds):
            for name in names:
                with variant(name):
                    start = time.perf_counter()
                    hyps = decode_ids(loaded.model, search, sources, 64)
                    rates[name].append(len(sources) / (time.perf_counter() - start))
                outputs[name] = [h[0].tokens for h in hyps]
        base = statistics.median(rates[names[0]])
        for name in names:
            median = statistics.median(rates[name])
            same = sum(a == b for a, b in zip(outputs[name], outputs[names[0]], strict=True))
            rows.append(
                [label, name, f"{median:.1f}", f"{median / base:.2f}×", f"{same}/{len(sources)}"]
            )
    print(
        f"machine: {machine()}; {args.threads} threads; {len(sources)} sentences, batch 64, "
        f"{args.rounds} rounds; medians (a busy machine: compare ratios, not absolutes)"
    )
    print(table(["search", "variant", "sent/s", "÷ before", "outputs equal to before"], rows))


if __name__ == "__main__":
    main()
