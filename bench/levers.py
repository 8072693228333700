"""A/B of training-speed levers in one process: the same model, batches and optimizer, variants
interleaved round by round so machine noise hits them alike; the median over rounds is printed.

Usage: python bench/levers.py [--rounds 5] [--updates 4] [--threads 1] [--levers fused,bf16,...]
Batches have the corpus's real lengths (bench/peers' segmented data, made if missing: token
budget 2,000 from length-sorted buckets) and random ids: speed does not depend on the ids.
  before     logits → cross-entropy, additive attention as vᵀ tanh(h) (the code before the levers)
  fused      + Seq2Seq.run(targets=…): projection and loss in chunks (modules/output.py)
  sigmoid    + additive scores as 2 vᵀ σ(2h), the (B, T, S, A) sum made whole
  blocked    + that sum made and differentiated in cache-sized blocks
  gru        + the GRUs from modules/gru.py: whole-sequence gates, a hand-written backward
  masks      + dropout masks drawn as uniform ≥ p instead of Bernoulli
  factored   + the blocked scores' σ(q + k) as 1 / (1 + e⁻ᵠ e⁻ᵏ)
  compiled   + that score and its gradients as compiled loops (Numba; the current code)
  bf16       the current code under CPU bf16 autocast
  bf16out    the current code with only the fused loss's products in bf16 (low_precision_output)
  bf16prod   the current code with every product over whole sequences in bf16 (bf16-products)
  compile    the current code with torch.compile(model.run)
  fusedadam  the current code with torch.optim.Adam(fused=True); foreachadam: foreach=True
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.decode_levers import variant
from bench.measure import CPU_NOTE, ROOT, machine, read_text, table
from bench.peers import prepare_data
from bench.train_speed import precision_context
from seq2seq.assemble import build_model
from seq2seq.data.batching import make_batch, token_batches
from seq2seq.model import Seq2Seq
from seq2seq.modules.attention import additive_kernels
from seq2seq.recipe import load_recipe
from seq2seq.training.loss import sequence_loss

V = 8000
# levers that are a train.precision
PRECISION = {"bf16": "bf16", "bf16out": "bf16-output", "bf16prod": "bf16-products"}


def real_batches(count: int) -> list:
    """`count` batches with the lengths of the corpus's first training batches."""
    data = prepare_data.default_work() / "data"
    prepare_data.segment(prepare_data.train_model(data), data)
    src = [len(line.split()) for line in read_text(data / "train.sp.en")]
    tgt = [len(line.split()) for line in read_text(data / "train.sp.de")]
    keep = [i for i in range(len(src)) if 0 < src[i] < 100 and 0 < tgt[i] < 100]
    gen = torch.Generator().manual_seed(0)
    source = [torch.randint(4, V, (src[i] + 1,), generator=gen).tolist() for i in keep]
    target = [torch.randint(4, V, (tgt[i],), generator=gen).tolist() for i in keep]
    lengths = [len(s) for s in source], [len(t) + 1 for t in target]
    order = token_batches(*lengths, 2000, seed=1, epoch=0)[:count]
    return [make_batch(source, target, indices) for indices in order]


# decode_levers.variant that gives each lever's older code: attention in tanh form, or in σ form
# with the whole sum; PyTorch's GRU
OLDER_CODE = {
    "before": "reorder",
    "fused": "reorder",
    "sigmoid": "drop",
    "blocked": "blocked",
    "gru": "gru",
    "masks": "masks",
}
# levers from before the compiled loops: the additive score runs as blocked tensor code
TENSOR_SCORES = {*OLDER_CODE, "factored"}


@contextlib.contextmanager
def tensor_scores() -> Iterator[None]:
    """The additive score as blocked tensor code: the compiled loops reported unavailable."""
    available = additive_kernels.available
    additive_kernels.available = lambda *tensors, load=True: False  # type: ignore[assignment]
    try:
        yield
    finally:
        additive_kernels.available = available


def update_fn(model: Seq2Seq, lever: str) -> Callable[[object], int]:
    """One training update (forward, backward, clipping, Adam) for a lever; returns tokens."""
    fused_adam = {"fused": True} if lever in ("fusedadam", "foreachadam") else {}
    if lever == "foreachadam":
        fused_adam = {"foreach": True}
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, **fused_adam)
    run = torch.compile(model.run) if lever == "compile" else model.run

    def update(batch: object) -> int:
        b = batch  # a Batch
        context = precision_context(PRECISION.get(lever, "fp32"))
        older = OLDER_CODE.get(lever)
        scores = tensor_scores() if lever in TENSOR_SCORES else contextlib.nullcontext()
        with context, scores, variant(older) if older else contextlib.nullcontext():
            if lever == "before":
                total, _ = sequence_loss(model(b.src, b.src_lengths, b.tgt_in), b.tgt_out)
            else:
                total = run(b.src, b.src_lengths, b.tgt_in, targets=b.tgt_out).loss
        count = int((b.tgt_out != 0).sum())
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return count

    return update


def main() -> None:
    """Interleave the levers round by round; print median target tokens/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=4, help="updates per lever per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--levers", default="before,fused,sigmoid,blocked,gru,masks,factored,compiled,bf16out"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(ROOT / "recipes" / "bench-matched.yaml")
    batches = real_batches(args.updates)
    levers = args.levers.split(",")
    updates = {}
    for lever in levers:
        torch.manual_seed(0)
        updates[lever] = update_fn(build_model(recipe.model, V, V), lever)
        for batch in batches[:2]:  # warm-up (and compilation)
            updates[lever](batch)
    rates: dict[str, list[float]] = {lever: [] for lever in levers}
    for _ in range(args.rounds):
        for lever in levers:
            start, tokens = time.process_time(), 0
            for batch in batches:
                tokens += updates[lever](batch)
            rates[lever].append(tokens / (time.process_time() - start))
    base = statistics.median(rates[levers[0]])
    rows = []
    for lever in levers:
        median = statistics.median(rates[lever])
        spread = f"{min(rates[lever]):,.0f}–{max(rates[lever]):,.0f}"
        rows.append([lever, f"{median:,.0f}", spread, f"{median / base:.2f}×"])
    print(
        f"machine: {machine()}; {args.threads} threads; {args.rounds} rounds × "
        f"{args.updates} updates; {CPU_NOTE}"
    )
    print(table(["lever", "tgt tok per CPU s (median)", "range", f"÷ {levers[0]}"], rows))


if __name__ == "__main__":
    main()
