"""Greedy search ("greedy"): the most likely token at every step, batched."""

from __future__ import annotations

import torch
from torch import Tensor

from seq2seq.data.batching import Batch
from seq2seq.model import Seq2Seq
from seq2seq.registry import register
from seq2seq.search.constraints import apply_length, ban_specials, check_limits, length_limits
from seq2seq.search.hypotheses import Hypothesis
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
        B = batch.src.size(0)
        max_len = length_limits(batch.src_lengths, self.max_length, self.max_ratio)
        min_len = torch.minimum(torch.full_like(max_len, self.min_length), max_len)
        prev = torch.full((B,), sp.bos, dtype=torch.long, device=batch.src.device)
        done = torch.zeros(B, dtype=torch.bool, device=prev.device)
        scores = torch.zeros(B, device=prev.device)
        tokens, trace = [], AttentionTrace()
        for t in range(int(max_len.max()) + 1):  # + 1: the closing </s>
            log_probs, state = model.step(prev, state)
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
