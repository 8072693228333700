"""A/B of decoding levers in one process on a trained run: variants interleaved round by round,
median sentences/s per variant, and whether each gives the same output as the first.

Usage: python bench/decode_levers.py RUN_DIR SOURCE [--lines 128] [--rounds 3] [--threads 1]
       [--beam-size 5] [--variants table,bf16proj,int8out]
  before    additive attention as vᵀ tanh(h), every state tensor reordered at each beam step
  reorder   + beams reorder only their own state (memory, mask and keys stay)
  sigmoid   + scores as 2 vᵀ σ(2h) (softmax-equal to the tanh form)
  drop      + greedy drops finished sentences from the batch (as beam search does)
  blocked   + the additive scores summed in cache-sized blocks
  shared    + beam search holds the memory, mask and keys once per sentence
  topk      + beam search's top-2k through block maxima
  projection + the output projection from a cached contiguous Wᵀ
  argmax    + greedy's argmax through block maxima
  factored  + the blocked scores' σ(q + k) as 1 / (1 + e⁻ᵠ e⁻ᵏ)
  table     + the decoder RNN's first-layer input gates looked up per token (the current
            decoding code; variant() also knows the training levers "gru" and "masks", see
            bench/levers.py)
  bf16proj  + the output projection in bf16 (a candidate, not in the package: outputs differ)
  int8out   table + the output projection in int8 (in place of bf16proj: the package's
            `--precision int8-output`; outputs differ)
--variants NAME,NAME,... runs only those (the first is the baseline of the ratios).
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
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.measure import CPU_NOTE, machine, read_text, table
from seq2seq import model as model_module
from seq2seq.bundle import load_run
from seq2seq.inference import decode_ids
from seq2seq.model import Seq2Seq
from seq2seq.modules import gru, int8, rnn_step
from seq2seq.modules.attention import additive, additive_scores, as_steps, attend, from_steps
from seq2seq.modules.attention.additive import AdditiveAttention
from seq2seq.modules.attention.additive_scores import reference_scores
from seq2seq.modules.derived import DerivedCache
from seq2seq.modules.dropout import Dropout
from seq2seq.modules.protocols import DecoderState
from seq2seq.registry import build
from seq2seq.search import beam as beam_module
from seq2seq.search import greedy as greedy_module
from seq2seq.search.constraints import apply_length, ban_specials, length_limits
from seq2seq.search.greedy import GreedySearch
from seq2seq.search.trace import AttentionTrace


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


@torch.no_grad()
def greedy_whole_batch(
    self: GreedySearch, model: object, batch: object, keep_attention: bool = False
) -> list:
    """Greedy search as it was: every row is stepped until the last one ends."""
    sp = model.specials  # type: ignore[attr-defined]
    state = model.encode(batch.src, batch.src_lengths)  # type: ignore[attr-defined]
    B = batch.src.size(0)  # type: ignore[attr-defined]
    max_len = length_limits(batch.src_lengths, self.max_length, self.max_ratio)  # type: ignore
    min_len = torch.minimum(torch.full_like(max_len, self.min_length), max_len)
    prev = torch.full((B,), sp.bos, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    scores = torch.zeros(B)
    tokens, trace = [], AttentionTrace()
    for t in range(int(max_len.max()) + 1):
        log_probs, state = model.step(prev, state)  # type: ignore[attr-defined]
        log_probs = apply_length(
            ban_specials(log_probs, sp.pad, sp.bos), t, min_len, max_len, sp.eos
        )
        best, choice = log_probs.max(dim=-1)
        choice = choice.masked_fill(done, sp.pad)
        scores += best.masked_fill(done, 0.0)
        tokens.append(choice)
        if keep_attention:
            trace = trace.extended(state)
        done |= choice == sp.eos
        prev = choice
        if bool(done.all()):
            break
    return self._collect(torch.stack(tokens, 1), scores, trace, sp.eos, batch.src_lengths)  # type: ignore[attr-defined]


# the levers in the order they were added: a variant has its own lever and every earlier one
LEVERS = (
    "before",
    "reorder",
    "sigmoid",
    "drop",
    "blocked",
    "gru",
    "masks",
    "shared",
    "topk",
    "projection",
    "argmax",
    "factored",
    "table",
    "bf16proj",
    "int8out",
)
# gru and masks are training levers: gru.supports needs a graph, and eval mode drops no units
DECODING_LEVERS = tuple(name for name in LEVERS if name not in ("gru", "masks"))


def generator_call(generator: nn.Module, features: Tensor) -> Tensor:
    """The output projection before the cached Wᵀ: the module itself."""
    out: Tensor = generator(features)
    return out


_bf16_copies: DerivedCache[Tensor] = DerivedCache()


def bf16_projection(generator: nn.Module, features: Tensor) -> Tensor:
    """The candidate lever: x Wᵀ with bf16 operands and a float32 result, Wᵀ copied once."""
    assert isinstance(generator, nn.Linear)
    weight = generator.weight
    transposed = _bf16_copies.get(
        generator, (weight,), lambda: weight.detach().t().contiguous().bfloat16()
    )
    logits = (features.reshape(-1, features.size(-1)).bfloat16() @ transposed).float()
    if generator.bias is not None:
        logits += generator.bias
    return logits.view(*features.shape[:-1], logits.size(-1))


def int8_projection(generator: nn.Module, features: Tensor) -> Tensor:
    """The output projection as `--precision int8-output` makes it (modules/int8.py)."""
    assert isinstance(generator, nn.Linear)
    logits = int8.linear(generator, features.reshape(-1, features.size(-1)))
    return logits.view(*features.shape[:-1], logits.size(-1))


def torch_topk(values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Beam search's top-2k before the block maxima."""
    top = values.topk(k, dim=-1)
    return top.values, top.indices


def max_by_row(values: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy's argmax before the block maxima: `max(dim)`."""
    best, index = values.max(dim=-1)
    return best, index


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """Patch the code back to what it was before the levers after `name`."""

    def lacks(lever: str) -> bool:
        return LEVERS.index(name) < LEVERS.index(lever)

    saved = (
        AdditiveAttention.prepare,
        AdditiveAttention.forward,
        DecoderState.reorder_beams,
        DecoderState.select,
    )
    greedy, blocked, own_gru = GreedySearch.__call__, additive.additive_scores, gru.supports
    uniform_masks = Dropout.forward
    projection, greedy_top = model_module.project, greedy_module.top_1
    shares_source, beam_top = Seq2Seq.shares_source, beam_module.top_k
    factor_bound, table_usable = additive_scores.FACTOR_BOUND, rnn_step.usable
    if lacks("table"):
        rnn_step.usable = lambda *args: False  # type: ignore[assignment]  # the RNN module steps
    if lacks("factored"):
        additive_scores.FACTOR_BOUND = -1.0  # no value within it: σ of the sum everywhere
    if lacks("shared"):  # every hypothesis gets its own copy of the memory
        Seq2Seq.shares_source = property(lambda self: False)  # type: ignore[method-assign,assignment]
    if lacks("topk"):
        beam_module.top_k = torch_topk
    if lacks("projection"):
        model_module.project = generator_call
    if name == "bf16proj":
        model_module.project = bf16_projection
    if name == "int8out":
        model_module.project = int8_projection
    if lacks("argmax"):
        greedy_module.top_1 = max_by_row
    if lacks("gru"):
        gru.supports = lambda rnn, inputs: False  # type: ignore[assignment]  # PyTorch's GRU
    if lacks("masks"):
        Dropout.forward = nn.Dropout.forward  # type: ignore[method-assign]  # Bernoulli masks
    if lacks("blocked"):
        additive.additive_scores = reference_scores  # the whole (B, T, S, A) sum at once
    if lacks("drop"):
        GreedySearch.__call__ = greedy_whole_batch  # type: ignore[method-assign]
    if lacks("sigmoid"):
        AdditiveAttention.prepare = tanh_prepare  # type: ignore[method-assign]
        AdditiveAttention.forward = tanh_forward  # type: ignore[method-assign]
    if lacks("reorder"):
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
        GreedySearch.__call__ = greedy  # type: ignore[method-assign]
        additive.additive_scores = blocked
        gru.supports = own_gru
        Dropout.forward = uniform_masks  # type: ignore[method-assign]
        model_module.project, greedy_module.top_1 = projection, greedy_top
        Seq2Seq.shares_source, beam_module.top_k = shares_source, beam_top  # type: ignore[method-assign]
        additive_scores.FACTOR_BOUND, rnn_step.usable = factor_bound, table_usable


def main() -> None:
    """Print median sentences/s per variant and searches."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("source")
    parser.add_argument("--lines", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--variants", help="comma-separated (default: every decoding variant)")
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
    names = args.variants.split(",") if args.variants else list(DECODING_LEVERS)
    unknown = [n for n in names if n not in DECODING_LEVERS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(DECODING_LEVERS)}")
    rows = []
    for label, search in searches.items():
        rates: dict[str, list[float]] = {n: [] for n in names}
        outputs: dict[str, list[list[int]]] = {}
        for _ in range(args.rounds):
            for name in names:
                with variant(name):
                    start = time.process_time()
                    hyps = decode_ids(loaded.model, search, sources, 64)
                    rates[name].append(len(sources) / (time.process_time() - start))
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
        f"{args.rounds} rounds; {CPU_NOTE}"
    )
    print(
        table(["search", "variant", "sent per CPU s", "÷ before", "outputs equal to before"], rows)
    )


if __name__ == "__main__":
    main()
