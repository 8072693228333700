"""Sampling ("sample"): draw outputs from the model's distribution, with temperature, top-k
and top-p (nucleus) filtering, seeded for repeatable draws."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seq2seq.data.batching import Batch
from seq2seq.model import Seq2Seq
from seq2seq.registry import register
from seq2seq.search.constraints import check_limits, constrained_step, length_limits
from seq2seq.search.hypotheses import Hypothesis


def filter_logits(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Scale by 1/temperature, keep the top_k tokens and the smallest set holding top_p mass."""
    logits = log_probs / temperature
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        mass = ordered.softmax(-1).cumsum(-1)
        drop = mass - ordered.softmax(-1) >= top_p  # the mass before this token already suffices
        logits = logits.scatter(1, order, ordered.masked_fill(drop, -math.inf))
    return logits


@register("search", "sample")
class SampleSearch:
    """`num_samples` random outputs per sentence, best log-probability first."""

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        num_samples: int = 1,
        seed: int | None = None,
        max_length: int = 250,
        max_ratio: float | None = 3.0,
    ) -> None:
        if temperature <= 0 or not 0 < top_p <= 1 or top_k < 0 or num_samples < 1:
            raise ValueError("need temperature > 0, 0 < top_p ≤ 1, top_k ≥ 0, num_samples ≥ 1")
        check_limits(max_length, max_ratio)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.num_samples, self.seed = num_samples, seed
        self.max_length, self.max_ratio = max_length, max_ratio

    @torch.no_grad()
    def __call__(
        self, model: Seq2Seq, batch: Batch, keep_attention: bool = False
    ) -> list[list[Hypothesis]]:
        """Draw `num_samples` outputs for every sentence of the batch."""
        sp, n = model.specials, self.num_samples
        B, device = batch.src.size(0), batch.src.device
        generator = torch.Generator(device=device)
        if self.seed is not None:
            generator.manual_seed(self.seed)
        else:  # fresh entropy, leaving the global generators (dropout, data order) untouched
            generator.seed()
        rows = torch.arange(B, device=device).repeat_interleave(n)
        state = model.encode(batch.src, batch.src_lengths).select(rows)
        max_len = length_limits(batch.src_lengths, self.max_length, self.max_ratio)[rows]
        min_len = torch.zeros_like(max_len)
        prev = torch.full((B * n,), sp.bos, dtype=torch.long, device=device)
        done = torch.zeros(B * n, dtype=torch.bool, device=device)
        scores = torch.zeros(B * n, device=device)
        tokens = []
        for t in range(int(max_len.max()) + 1):  # + 1: the closing </s>
            log_probs, state = constrained_step(model, prev, state, t, min_len, max_len)
            logits = filter_logits(log_probs, self.temperature, self.top_k, self.top_p)
            choice = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            choice = choice.masked_fill(done, sp.pad)
            scores += log_probs.gather(1, choice[:, None]).squeeze(1).masked_fill(done, 0.0)
            tokens.append(choice)
            done |= choice == sp.eos
            prev = choice
            if bool(done.all()):
                break
        return self._collect(torch.stack(tokens, 1).tolist(), scores.tolist(), B, sp.eos)

    def _collect(
        self, sequences: list[list[int]], scores: list[float], B: int, eos: int
    ) -> list[list[Hypothesis]]:
        results = []
        for i in range(B):
            group = []
            for row in range(i * self.num_samples, (i + 1) * self.num_samples):
                seq = sequences[row]
                end = seq.index(eos) if eos in seq else len(seq)
                group.append(Hypothesis(seq[:end], scores[row], None, scores[row]))
            results.append(sorted(group, key=lambda h: -h.score))
        return results
