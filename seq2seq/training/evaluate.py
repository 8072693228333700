"""Validation: loss and perplexity under teacher forcing, and metrics of decoded output."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from seq2seq.data.batching import make_batch, token_batches
from seq2seq.data.dataset import Examples
from seq2seq.inference import decode_ids
from seq2seq.metrics.score import Score, score_all
from seq2seq.model import Seq2Seq
from seq2seq.training.loss import sequence_loss


@torch.no_grad()
def validation_loss(model: Seq2Seq, examples: Examples, batch_tokens: int) -> tuple[float, float]:
    """Mean per-token cross-entropy and perplexity of `examples`."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    src_len = [len(s) for s in examples.source]
    tgt_len = [len(t) for t in examples.target]
    for indices in token_batches(src_len, tgt_len, batch_tokens, seed=0, epoch=0):
        batch = make_batch(examples.source, examples.target, indices).to(device)
        assert batch.tgt_in is not None and batch.tgt_out is not None
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, count = sequence_loss(logits, batch.tgt_out)
        total += float(loss)
        tokens += int(count)
    model.train(was_training)
    mean = total / max(tokens, 1)
    return mean, math.exp(min(mean, 50.0))


def decode_and_score(
    model: Seq2Seq,
    search: Any,
    source_ids: Sequence[Sequence[int]],
    references: Sequence[str],
    tgt_tok: Any,
    metrics: Sequence[Any],
    batch_size: int,
) -> tuple[list[str], list[Score]]:
    """Decode sources, detokenize, and score against raw reference text."""
    hyps = decode_ids(model, search, source_ids, batch_size)
    texts = tgt_tok.decode([h[0].tokens if h else [] for h in hyps])
    return texts, score_all(metrics, texts, references)
