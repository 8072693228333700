"""Streaming training data (`data.streaming: true`) for corpora that fit neither in memory nor
on local disk: pairs are read and tokenized as training goes, through a `datasets`
IterableDataset shuffled with a buffer, and packed into approximate token-budget batches one
buffer-sized pool at a time (sorted by length inside the pool, so padding stays low).

Every rank reads the same stream with the same seed and so sees the same global batches; it
trains on its share, as with in-memory data. Resuming skips the batches already done.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seq2seq.data.batching import token_batches
from seq2seq.data.cache import Encoder, file_pairs, pair_source
from seq2seq.data.dataset import check_columns
from seq2seq.errors import DataError
from seq2seq.recipe import Corpus

Pairs = tuple[list[list[int]], list[list[int]]]


def pair_stream(corpus: Corpus, label: str) -> Any:
    """An IterableDataset of {"source", "target"} text pairs, nothing read yet."""
    import datasets

    datasets.disable_progress_bars()  # training shows its own progress

    if corpus.dataset is None:
        paths = [corpus.tsv] if corpus.tsv is not None else [corpus.source, corpus.target]
        for path in paths:
            if path is None or not Path(path).is_file():
                raise DataError(f"{label}: file {path} not found")
        stream = datasets.IterableDataset.from_generator(
            file_pairs, gen_kwargs=pair_source(corpus, label)
        )
    else:
        try:
            stream = datasets.load_dataset(
                corpus.dataset,
                name=corpus.config,
                data_files=corpus.data_files,
                split=corpus.split or "train",
                streaming=True,
            )
        except Exception as exc:  # datasets raises many error types (network, builder, schema)
            raise DataError(
                f"{label}: streaming dataset '{corpus.dataset}' failed: {type(exc).__name__}: {exc}"
            ) from exc
        if stream.column_names is not None:
            check_columns(corpus, label, list(stream.column_names))
        stream = stream.select_columns([corpus.source_column, corpus.target_column])
        stream = stream.rename_columns(
            {corpus.source_column: "source", corpus.target_column: "target"}
        )
    return stream.take(corpus.limit) if corpus.limit is not None else stream


def first_pairs(stream: Any, count: int) -> tuple[list[str], list[str]]:
    """The first `count` pairs' text (to train the tokenizer on)."""
    source, target = [], []
    for row in itertools.islice(iter(stream), count):
        source.append(row["source"] or "")
        target.append(row["target"] or "")
    if not source:
        raise DataError("data.train: the stream is empty")
    return source, target


class StreamFeed:
    """Each epoch: the stream shuffled (seed + epoch), tokenized, packed pool by pool."""

    def __init__(
        self, stream: Any, encoder: Encoder, batch_tokens: int, seed: int, buffer: int
    ) -> None:
        self.stream, self.encoder = stream, encoder
        self.batch_tokens, self.seed, self.buffer = batch_tokens, seed, buffer

    def epoch(self, epoch: int, start: int) -> Iterator[Pairs]:
        """The epoch's batches of id pairs, from batch `start` on (earlier ones are re-read)."""
        return itertools.islice(self._batches(epoch), start, None)

    def tokens(self, batch: Pairs) -> int:
        """Target tokens of a batch, </s> included."""
        return sum(len(t) + 1 for t in batch[1])

    def load(self, batch: Pairs) -> Pairs:
        """A streamed batch already holds its ids."""
        return batch

    def batches_per_epoch(self) -> None:
        """Unknown until the stream ends."""

    def _pairs(self, epoch: int) -> Iterator[tuple[list[int], list[int]]]:
        stream = self.stream.shuffle(seed=self.seed, buffer_size=self.buffer)
        stream.set_epoch(epoch)  # a different order every epoch, the same on every rank
        encoded = stream.map(
            self.encoder, batched=True, with_indices=True, remove_columns=["source", "target"]
        )
        for row in encoded:
            yield row["src"], row["tgt"]

    def _batches(self, epoch: int) -> Iterator[Pairs]:
        pool: list[tuple[list[int], list[int]]] = []
        number = 0
        for pair in self._pairs(epoch):
            pool.append(pair)
            if len(pool) == self.buffer:
                yield from self._pack(pool, epoch, number)
                pool, number = [], number + 1
        if pool:
            yield from self._pack(pool, epoch, number)

    def _pack(
        self, pool: list[tuple[list[int], list[int]]], epoch: int, number: int
    ) -> Iterator[Pairs]:
        src_len = [len(s) for s, _ in pool]
        tgt_len = [len(t) for _, t in pool]
        order = epoch * 1_000_003 + number  # each pool its own fixed shuffle
        for indices in token_batches(src_len, tgt_len, self.batch_tokens, self.seed, order):
            yield [pool[i][0] for i in indices], [pool[i][1] for i in indices]
