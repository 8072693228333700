"""Everything before the first step: read data, fit or load tokenizers, encode examples.

Three ways to hold the training set: in memory (the default), memory-mapped from the
tokenized-corpus cache (`data.cache_dir`), or streamed (`data.streaming`). In a multi-process
run rank 0 fits the tokenizer and the others receive it, so every rank has the same vocabulary.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq import registry
from seq2seq.data import cache
from seq2seq.data.dataset import Examples, encode_pairs, read_corpus
from seq2seq.data.streaming import StreamFeed, first_pairs, pair_stream
from seq2seq.errors import DataError
from seq2seq.model import Specials
from seq2seq.recipe import Recipe
from seq2seq.training.distributed import Group
from seq2seq.training.feed import Feed, IndexedFeed

log = logging.getLogger(__name__)
Tokenizers = dict[str, Any]
SINGLE = Group()  # one process, no communication


@dataclass
class Prepared:
    """Tokenizers and encoded data for one run."""

    tokenizers: Tokenizers  # "source", "target" (the same object when joint)
    train: Any  # Examples or cache.CachedExamples; None when streaming
    valid: Examples | None
    valid_refs: list[str]  # raw reference text, aligned with `valid`
    feed: Feed  # the training batches as the loop takes them


def fit_tokenizers(recipe: Recipe, source: Iterable[str], target: Iterable[str]) -> Tokenizers:
    """Train the tokenizer(s) named by the recipe on the training text."""
    spec = recipe.data.tokenizer
    if recipe.data.joint_vocab:
        joint = registry.build("tokenizer", spec, where="data.tokenizer")
        joint.fit(itertools.chain(source, target))
        return {"source": joint, "target": joint}
    src_tok = registry.build("tokenizer", spec, where="data.tokenizer")
    tgt_tok = registry.build("tokenizer", spec, where="data.tokenizer")
    src_tok.fit(source)
    tgt_tok.fit(target)
    return {"source": src_tok, "target": tgt_tok}


def agree(
    recipe: Recipe, group: Group, given: Tokenizers | None, fit: Callable[[], Tokenizers]
) -> Tokenizers:
    """The given tokenizers, or rank 0's fitted ones on every rank (sent as bytes)."""
    if given is not None:
        return given
    fitted = fit() if group.main else None
    if not group.active:
        assert fitted is not None
        return fitted
    blobs = None
    if fitted is not None:
        joint = fitted["source"] is fitted["target"]
        blobs = {"joint": joint, "spec": recipe.data.tokenizer}
        blobs.update({side: t.to_bytes() for side, t in fitted.items()})
    blobs = group.broadcast(blobs)
    if fitted is not None:
        return fitted
    assert blobs is not None
    return _from_bytes(blobs)


def _from_bytes(blobs: dict[str, Any]) -> Tokenizers:
    loaded = {}
    for side in ("source", "target") if not blobs["joint"] else ("source",):
        # the spec does not matter: load_bytes replaces what the builder set up
        loaded[side] = registry.build("tokenizer", blobs["spec"], where="data.tokenizer")
        loaded[side].load_bytes(blobs[side])
    if blobs["joint"]:
        loaded["target"] = loaded["source"]
    return loaded


def prepare(
    recipe: Recipe, tokenizers: Tokenizers | None = None, group: Group = SINGLE
) -> Prepared:
    """Read and encode the recipe's data; tokenizers are fitted unless given (resume)."""
    data = recipe.data
    valid_text = None
    if data.valid is not None:  # read before anything slow so a bad file fails fast
        valid_text = read_corpus(data.valid, "data.valid")
    eos = Specials().eos
    train: Any = None
    feed: Feed
    if data.streaming:
        stream = pair_stream(data.train, "data.train")
        tokenizers = agree(
            recipe,
            group,
            tokenizers,
            lambda: fit_tokenizers(recipe, *first_pairs(stream, data.fit_pairs)),
        )
        encoder = cache.Encoder(tokenizers, eos, data.max_length, "data.train")
        feed = StreamFeed(
            stream, encoder, recipe.train.batch_tokens, recipe.seed, data.shuffle_buffer
        )
    elif data.cache_dir is not None:
        tokenizers, train = _cached(recipe, tokenizers, group)
        feed = IndexedFeed(train, recipe.train.batch_tokens, recipe.seed)
    else:
        source, target = read_corpus(data.train, "data.train")
        tokenizers = agree(
            recipe, group, tokenizers, lambda: fit_tokenizers(recipe, source, target)
        )
        train, _ = encode_pairs(
            source, target, tokenizers["source"], tokenizers["target"], eos, data.max_length
        )
        _report_dropped(recipe, len(source), len(train))
        feed = IndexedFeed(train, recipe.train.batch_tokens, recipe.seed)
    valid, refs = None, []
    if valid_text is not None:
        pairs = [(s, t) for s, t in zip(*valid_text, strict=True) if s.strip() and t.strip()]
        if not pairs:
            raise DataError("data.valid: every validation pair has an empty side")
        v_src, v_tgt = [p[0] for p in pairs], [p[1] for p in pairs]
        valid, _ = encode_pairs(v_src, v_tgt, tokenizers["source"], tokenizers["target"], eos)
        refs = [v_tgt[i] for i in valid.origin]
    return Prepared(tokenizers, train, valid, refs, feed)


def _report_dropped(recipe: Recipe, read: int, kept: int) -> None:
    if read > kept:
        log.info(
            "dropped %d of %d training pairs (empty, or longer than %d pieces)",
            read - kept,
            read,
            recipe.data.max_length,
        )
    if not kept:
        raise DataError(
            f"no training pair is left after dropping empty pairs and pairs longer than "
            f"data.max_length={recipe.data.max_length} pieces; raise data.max_length"
        )


def _cached(
    recipe: Recipe, tokenizers: Tokenizers | None, group: Group
) -> tuple[Tokenizers, cache.CachedExamples]:
    """Tokenizers and training pairs through the cache: built once, then memory-mapped."""
    data = recipe.data
    assert data.cache_dir is not None
    root = Path(data.cache_dir)
    fingerprint = cache.corpus_fingerprint(data.train)
    raw = cache.RawCorpus(root, data.train, "data.train")
    try:
        tokenizers = agree(
            recipe, group, tokenizers, lambda: _cached_tokenizers(recipe, root, raw, fingerprint)
        )
        digest = cache.tokenizer_digest(tokenizers)
        path = root / f"pairs-{cache.key_of(fingerprint, digest, data.max_length)}"
        if group.local_rank == 0 and not path.is_dir():  # one builder per node
            log.info("tokenizing the training data into the cache %s", path)
            read, kept = cache.build_examples(
                path,
                raw,
                cache.Encoder(tokenizers, Specials().eos, data.max_length, "data.train"),
                data.num_proc,
            )
            _report_dropped(recipe, read, kept)
        elif group.local_rank == 0:
            log.info("training data from the cache %s (no tokenizing)", path)
    finally:
        raw.close()
    group.barrier()
    return tokenizers, cache.CachedExamples(path)


def _cached_tokenizers(
    recipe: Recipe, root: Path, raw: cache.RawCorpus, fingerprint: dict[str, Any]
) -> Tokenizers:
    """The tokenizers fitted earlier on the same data with the same settings, or fit them."""
    data = recipe.data
    path = root / f"tokenizer-{cache.key_of(fingerprint, data.tokenizer, data.joint_vocab)}"
    stored = cache.load_tokenizer_entry(
        path, lambda: registry.build("tokenizer", data.tokenizer, where="data.tokenizer")
    )
    if stored is not None:
        log.info("tokenizer from the cache %s", path)
        return stored
    fitted = fit_tokenizers(
        recipe,
        cache.text_lines(raw.table, "source"),
        cache.text_lines(raw.table, "target"),
    )
    cache.store_tokenizer_entry(path, fitted)
    return fitted
