"""Greedy search ("greedy"): the most likely token at every step, batched."""

from __future__ import annotations

import torch
from torch import Tensor

from seq2seq.data.batching import Batch
from seq2seq.model import Seq2Seq
from seq2seq.registry import register
from seq2seq.search.hypotheses import Hypothesis


def length_limits(lengths: Tensor, max_length: int, max_ratio: float | None) -> Tensor:
    """Per-sentence output limits (B,): `max_length`, or less when a source-length ratio is set."""
    limits = torch.full_like(lengths, max_length)
    if max_ratio is not None:
        by_ratio = (lengths.float() * max_ratio).ceil().long() + 5
        limits = torch.minimum(limits, by_ratio)
    return limits


@register("search", "greedy")
class GreedySearch:
    """Picks the argmax token each step; stops a sentence at </s> or its length limit."""

    def __init__(self, max_length: int = 250, max_ratio: float | None = 3.0) -> None:
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = max_length
        self.max_ratio = max_ratio

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, batch: Batch, keep_attention: bool = False
    ) -> list[list[Hypothesis]]:
        """Decode a batch; one hypothesis per sentence."""
        specials = model.specials
        state = model.encode(batch.src, batch.src_lengths)
        B = batch.src.size(0)
        limits = length_limits(batch.src_lengths, self.max_length, self.max_ratio)
        prev = torch.full((B,), specials.bos, dtype=torch.long, device=batch.src.device)
        done = torch.zeros(B, dtype=torch.bool, device=prev.device)
        scores = torch.zeros(B, device=prev.device)
        tokens, weights = [], []
        for t in range(int(limits.max())):
            log_probs, state = model.step(prev, state)
            choice = log_probs.argmax(dim=-1)
            choice = torch.where(t + 1 >= limits, specials.eos, choice)  # forced end at the limit
            best = log_probs.gather(1, choice[:, None]).squeeze(1)
            choice = choice.masked_fill(done, specials.pad)
            scores += best.masked_fill(done, 0.0)
            tokens.append(choice)
            if keep_attention and state.weights is not None:
                weights.append(state.weights)
            done |= choice == specials.eos
            prev = choice
            if bool(done.all()):
                break
        return self._collect(torch.stack(tokens, 1), scores, weights, specials.eos)

    @staticmethod
    def _collect(
        tokens: Tensor, scores: Tensor, weights: list[Tensor], eos: int
    ) -> list[list[Hypothesis]]:
        attention = torch.stack(weights, 1) if weights else None  # (B, T, S)
        results = []
        for row, seq in enumerate(tokens.tolist()):
            length = seq.index(eos) if eos in seq else len(seq)
            attn = None if attention is None else attention[row, : length + 1].cpu()
            results.append([Hypothesis(seq[:length], float(scores[row]), attn)])
        return results
