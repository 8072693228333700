"""Decoding text with a loaded run: batching by length, order kept, empty lines preserved."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch

from seq2seq.bundle import Loaded
from seq2seq.data.batching import make_batch, sentence_batches
from seq2seq.model import Seq2Seq
from seq2seq.search.hypotheses import Hypothesis

if TYPE_CHECKING:  # imported by the commands that fork workers, not by every decode
    from seq2seq.workers import DecodeWorkers

log = logging.getLogger(__name__)


def decode_ids(
    model: Seq2Seq,
    search: Any,
    source_ids: Sequence[Sequence[int]],
    batch_size: int = 64,
    keep_attention: bool = False,
    workers: DecodeWorkers | None = None,
) -> list[list[Hypothesis]]:
    """Decode source id lists (each ending in </s>); results come back in input order.

    With `workers` (made for this model and search), batches are decoded there."""
    results: list[list[Hypothesis]] = [[] for _ in source_ids]
    batches = sentence_batches([len(s) for s in source_ids], batch_size)
    if workers is not None and (workers.model is not model or workers.search is not search):
        raise ValueError("these workers decode with another model or search")
    if workers is not None and len(batches) > 1:
        shares = [[source_ids[i] for i in indices] for indices in batches]
        outputs = workers.map(shares, keep_attention)
    else:
        outputs = (decode_batch(model, search, source_ids, ix, keep_attention) for ix in batches)
    was_training = model.training
    model.eval()  # workers decode with the model as it was forked: loaded, in eval mode
    try:
        for indices, hypotheses in zip(batches, outputs, strict=True):
            for index, hyps in zip(indices, hypotheses, strict=True):
                results[index] = hyps
    finally:
        model.train(was_training)
    return results


def decode_batch(
    model: Seq2Seq,
    search: Any,
    source_ids: Sequence[Sequence[int]],
    indices: Sequence[int],
    keep_attention: bool = False,
) -> list[list[Hypothesis]]:
    """The hypotheses of the sources at `indices`, decoded as one batch (the caller sets eval
    mode)."""
    batch = make_batch(source_ids, None, list(indices)).to(next(model.parameters()).device)
    with torch.no_grad():
        outputs: list[list[Hypothesis]] = search(model, batch, keep_attention=keep_attention)
    return outputs


@dataclass
class Translation:
    """One input line's result: its text and every hypothesis, with pieces for display."""

    source: str
    source_pieces: list[str]
    hypotheses: list[Hypothesis]  # best first; empty for a blank input line
    texts: list[str]  # detokenized hypotheses
    pieces: list[list[str]]  # each hypothesis's target pieces (for attention displays)

    @property
    def text(self) -> str:
        """The best translation ("" for a blank line)."""
        return self.texts[0] if self.texts else ""

    def records(self, with_attention: bool = False) -> list[dict[str, Any]]:
        """Each hypothesis as plain data: text, scores, and with attention the source and
        target pieces (</s> included) and one row of weights per target piece."""
        items = []
        for hyp, text, pieces in zip(self.hypotheses, self.texts, self.pieces, strict=True):
            item: dict[str, Any] = {"text": text, "score": hyp.score, "log_prob": hyp.log_prob}
            if with_attention and hyp.attention is not None:
                item["target_pieces"] = [*pieces, "</s>"]
                item["source_pieces"] = self.source_pieces
                item["attention"] = [[round(w, 5) for w in row] for row in hyp.attention.tolist()]
            items.append(item)
        return items


def translate_batch(
    loaded: Loaded,
    search: Any,
    texts: Sequence[str],
    batch_size: int = 64,
    keep_attention: bool = False,
    max_source_length: int | None = None,
    first_line: int = 1,
    workers: DecodeWorkers | None = None,
) -> list[Translation]:
    """Translate a list of texts in input order; a blank text gives no hypotheses.

    Sources longer than `max_source_length` pieces are cut there, with a warning naming the
    line (counted from `first_line`)."""
    src_tok, tgt_tok = loaded.tokenizers["source"], loaded.tokenizers["target"]
    eos = loaded.model.specials.eos
    wanted = [i for i, text in enumerate(texts) if text.strip()]
    encoded = src_tok.encode([texts[i] for i in wanted])
    if max_source_length:
        encoded = [
            _truncate(ids, max_source_length, first_line + i)
            for i, ids in zip(wanted, encoded, strict=True)
        ]
    sources = [[*ids, eos] for ids in encoded]
    results = [Translation(text, [], [], [], []) for text in texts]
    hyps = decode_ids(loaded.model, search, sources, batch_size, keep_attention, workers)
    for i, ids, options in zip(wanted, sources, hyps, strict=True):
        decoded = tgt_tok.decode([h.tokens for h in options])
        pieces = [tgt_tok.pieces(h.tokens) for h in options]
        results[i] = Translation(texts[i], src_tok.pieces(ids), options, decoded, pieces)
    return results


def _truncate(ids: list[int], limit: int, line: int) -> list[int]:
    if len(ids) <= limit:
        return ids
    log.warning(
        "input line %d has %d pieces; translating its first %d (see --max-source-length)",
        line,
        len(ids),
        limit,
    )
    return ids[:limit]


def translate_texts(
    loaded: Loaded,
    search: Any,
    texts: Sequence[str],
    batch_size: int = 64,
    workers: DecodeWorkers | None = None,
) -> list[str]:
    """The best translation of each text; a blank text gives an empty translation."""
    translations = translate_batch(loaded, search, texts, batch_size, workers=workers)
    return [t.text for t in translations]


def translate_stream(
    loaded: Loaded,
    search: Any,
    lines: Iterable[str],
    batch_size: int = 64,
    chunk: int = 2000,
    keep_attention: bool = False,
    max_source_length: int | None = None,
    workers: DecodeWorkers | None = None,
) -> Iterator[Translation]:
    """Translate lines lazily, `chunk` lines at a time, so memory stays bounded."""
    iterator = iter(lines)
    first_line = 1
    while True:
        block = list(islice(iterator, chunk))
        if not block:
            return
        yield from translate_batch(
            loaded,
            search,
            block,
            batch_size,
            keep_attention,
            max_source_length,
            first_line,
            workers,
        )
        first_line += len(block)
