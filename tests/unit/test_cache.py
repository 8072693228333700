"""The tokenized-corpus cache (Arrow, memory-mapped) and streaming mode."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seq2seq.data.cache import corpus_fingerprint, file_fingerprint
from seq2seq.data.streaming import StreamFeed, pair_stream
from seq2seq.errors import DataError
from seq2seq.recipe import Corpus, parse_recipe
from seq2seq.training.checkpoint import WEIGHTS, checkpoint_dir, load_trainer_state
from seq2seq.training.prepare import prepare
from seq2seq.training.run import train
from tests.conftest import tiny_recipe

BUILD = "tokenizing the training data into the cache"
HIT = "training data from the cache"


def _recipe(data: Path, keys: dict) -> dict:
    recipe = tiny_recipe(data)
    recipe["data"].update(keys)
    return recipe


def _weights(run: Path) -> dict[str, torch.Tensor]:
    directory = checkpoint_dir(run, "latest")
    assert directory is not None
    return load_file(str(directory / WEIGHTS))


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    text = "\n".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def test_second_run_reads_the_cache_and_trains_the_same(
    reversal_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first run tokenizes into the cache, the second tokenizes nothing, and both train
    exactly as the in-memory path does."""
    caplog.set_level(logging.INFO)
    cached = _recipe(reversal_dir, {"cache_dir": str(tmp_path / "cache")})
    cached["train"]["max_steps"] = 4
    train(parse_recipe(cached), tmp_path / "first")
    first = _messages(caplog)
    assert BUILD in first and HIT not in first
    train(parse_recipe(cached), tmp_path / "second")
    second = _messages(caplog)
    assert BUILD not in second and HIT in second and "tokenizer from the cache" in second

    plain = tiny_recipe(reversal_dir)
    plain["train"]["max_steps"] = 4
    train(parse_recipe(plain), tmp_path / "memory")
    reference = _weights(tmp_path / "memory")
    for run in ("first", "second"):
        weights = _weights(tmp_path / run)
        assert all(torch.equal(reference[k], weights[k]) for k in reference), run


def test_changed_data_file_invalidates_the_cache(
    reversal_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Appending a pair changes the fingerprint: the next run tokenizes again."""
    caplog.set_level(logging.INFO)
    recipe = _recipe(reversal_dir, {"cache_dir": str(tmp_path / "cache")})
    recipe["train"]["max_steps"] = 1
    train(parse_recipe(recipe), tmp_path / "a")
    assert BUILD in _messages(caplog)
    for name, line in (("train.src", "1 2 3\n"), ("train.tgt", "3 2 1\n")):
        with open(reversal_dir / name, "a", encoding="utf-8") as handle:
            handle.write(line)
    train(parse_recipe(recipe), tmp_path / "b")
    again = _messages(caplog)
    assert BUILD in again and HIT not in again
    entries = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert entries == ["pairs", "pairs", "tokenizer", "tokenizer"]  # no scratch left behind


def test_fingerprint_sees_content_behind_same_size_and_time(tmp_path: Path) -> None:
    """Same size and modification time but other bytes: a different fingerprint."""
    path = tmp_path / "f.txt"
    path.write_text("abc\n", encoding="utf-8")
    stat = path.stat()
    before = file_fingerprint(path)
    path.write_text("abd\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_fingerprint(path)["size"] == before["size"]
    assert file_fingerprint(path) != before
    with pytest.raises(DataError, match="missing.txt not found"):
        corpus_fingerprint(Corpus(source=str(path), target=str(tmp_path / "missing.txt")))


def test_cache_refuses_misaligned_files(reversal_dir: Path, tmp_path: Path) -> None:
    """Line counts are compared while the text streams into the cache."""
    with open(reversal_dir / "train.src", "a", encoding="utf-8") as handle:
        handle.write("1 2\n")
    recipe = _recipe(reversal_dir, {"cache_dir": str(tmp_path / "cache")})
    with pytest.raises(DataError, match="has 3001 lines but .* has 3000"):
        prepare(parse_recipe(recipe))


def test_cache_reads_a_datasets_corpus(tmp_path: Path, reversal_dir: Path) -> None:
    """A `dataset: json` corpus goes through the cache too, columns renamed."""
    rows = [{"en": f"{i % 7} {i % 5}", "de": f"{i % 5} {i % 7}"} for i in range(50)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = _recipe(reversal_dir, {"cache_dir": str(tmp_path / "cache")})
    recipe["data"]["train"] = {
        "dataset": "json",
        "data_files": str(data),
        "source_column": "en",
        "target_column": "de",
        "limit": 40,
    }
    prepared = prepare(parse_recipe(recipe))
    assert len(prepared.train) == 40
    source, target = prepared.train.take([0, 3])
    assert source[1][-1] == 3  # </s> ends the source
    assert prepared.tokenizers["target"].decode(target) == ["0 0", "3 3"]


def test_stream_feed_covers_every_pair_within_budget(reversal_dir: Path) -> None:
    """One streamed epoch holds every kept pair once, in batches within the token budget; the
    order is fixed by seed and epoch."""
    recipe = parse_recipe(_recipe(reversal_dir, {"streaming": True, "shuffle_buffer": 700}))
    prepared = prepare(recipe)
    feed = prepared.feed
    assert isinstance(feed, StreamFeed) and prepared.train is None
    epoch = list(feed.epoch(0, 0))
    assert sum(len(src) for src, _ in epoch) == 3000
    for src, tgt in epoch:
        width = max(max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True))
        assert width * len(src) <= 400 or len(src) == 1
    assert next(iter(feed.epoch(0, 5))) == epoch[5]
    assert next(iter(feed.epoch(1, 0))) != epoch[0]


def test_streaming_trains_and_resumes(reversal_dir: Path, tmp_path: Path) -> None:
    """`data.streaming: true` trains; a resumed run goes on from the saved batch position."""
    recipe = _recipe(reversal_dir, {"streaming": True, "shuffle_buffer": 500})
    recipe["train"]["max_steps"] = 3
    train(parse_recipe(recipe), tmp_path / "run")
    train(None, tmp_path / "run", resume=True, overrides=("train.max_steps=5",))
    state = load_trainer_state(checkpoint_dir(tmp_path / "run", "latest"))  # type: ignore[arg-type]
    assert state["loop"]["step"] == 5 and state["loop"]["batch_in_epoch"] == 5


def test_streaming_names_a_missing_file(tmp_path: Path) -> None:
    """A missing file fails before anything is read."""
    with pytest.raises(DataError, match="not found"):
        pair_stream(Corpus(source=str(tmp_path / "a"), target=str(tmp_path / "b")), "data.train")


def test_tsv_corpus_through_cache_and_stream(reversal_dir: Path, tmp_path: Path) -> None:
    """A one-file TSV corpus is cached and streamed like two aligned files."""
    lines = zip(
        (reversal_dir / "train.src").read_text().splitlines(),
        (reversal_dir / "train.tgt").read_text().splitlines(),
        strict=True,
    )
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in lines), encoding="utf-8")
    recipe = _recipe(reversal_dir, {"cache_dir": str(tmp_path / "cache")})
    recipe["data"]["train"] = {"tsv": str(tsv)}
    assert len(prepare(parse_recipe(recipe)).train) == 3000
    recipe["data"].update(cache_dir=None, streaming=True)
    feed = prepare(parse_recipe(recipe)).feed
    assert sum(len(src) for src, _ in feed.epoch(0, 0)) == 3000
