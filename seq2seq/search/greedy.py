"""Greedy search ("greedy"): the most likely token at every step, batched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seq2seq.data.batching import Batch
from seq2seq.model import Seq2Seq
from seq2seq.registry import register
from seq2seq.search.constraints import check_limits, constrained_step, length_limits
from seq2seq.search.hypotheses import Hypothesis
from seq2seq.search.top import top_1
from seq2seq.search.trace import AttentionTrace


@register("search", "greedy")
class GreedySearch:
    """Picks the argmax token each step; stops a sentence at </s> or its length limit.

    Length limits work as in beam search, which with beam_size 1 and no length penalty gives
    exactly this output.
    """

    def __init__(
        self,
        max_length: int = 250,
        max_ratio: float | None = 3.0,
        min_length: int = 0,
    ) -> None:
        check_limits(max_length, max_ratio, min_length)
        self.max_length = max_length
        self.max_ratio = max_ratio
        self.min_length = min_length

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, batch: Batch, keep_attention: bool = False
    ) -> list[list[Hypothesis]]:
        """Decode a batch; one hypothesis per sentence."""
        sp = model.specials
        state = model.encode(batch.src, batch.src_lengths)
        B, device = batch.src.size(0), batch.src.device
        max_len = length_limits(batch.src_lengths, self.max_length, self.max_ratio)
        min_len = torch.minimum(torch.full_like(max_len, self.min_length), max_len)
        longest = int(max_len.max())
        active = torch.arange(B, device=device)  # rows still decoding; finished ones leave
        prev = torch.full((B,), sp.bos, dtype=torch.long, device=device)
        scores = torch.zeros(B, device=device)
        tokens, trace = [], AttentionTrace()
        for t in range(longest + 1):  # + 1: the closing </s>
            log_probs, state = constrained_step(model, prev, state, t, min_len, max_len)
            best, choice = top_1(log_probs)  # = log_probs.max(dim=-1), faster on a CPU
            scores[active] += best
            tokens.append(torch.full((B,), sp.pad, device=device).index_copy_(0, active, choice))
            if keep_attention:
                trace = trace.extended(_every_row(state, active, B))
            going = choice != sp.eos
            if not bool(going.all()):
                if not bool(going.any()):
                    break
                keep = going.nonzero().squeeze(1)
                state, active, choice = state.select(keep), active[keep], choice[keep]
                min_len, max_len = min_len[keep], max_len[keep]
            prev = choice
        return self._collect(torch.stack(tokens, 1), scores, trace, sp.eos, batch.src_lengths)

    @staticmethod
    def _collect(
        tokens: Tensor, scores: Tensor, trace: AttentionTrace, eos: int, src_lengths: Tensor
    ) -> list[list[Hypothesis]]:
        results = []
        for row, seq in enumerate(tokens.tolist()):
            length = seq.index(eos) if eos in seq else len(seq)
            width = int(src_lengths[row])  # this sentence's real source positions only
            attn, heads = trace.of_row(row, slice(None, width), length + 1)
            score = float(scores[row])
            results.append([Hypothesis(seq[:length], score, attn, score, heads)])
        return results


@dataclass(frozen=True)
class _StepWeights:
    """A step's attention weights for all B rows (zeros for rows that have finished)."""

    weights: Tensor | None
    head_weights: Tensor | None


def _every_row(state: Any, active: Tensor, rows: int) -> _StepWeights:
    """Scatter the active rows' weights (and per-head weights) of a decoder (or ensemble)
    state back to their batch rows."""

    def spread(values: Tensor | None) -> Tensor | None:
        if values is None:
            return None
        return values.new_zeros(rows, *values.shape[1:]).index_copy_(0, active, values)

    return _StepWeights(spread(state.weights), spread(getattr(state, "head_weights", None)))
