"""Reading corpora (files and `datasets`), tokenizers, and token-budget batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seq2seq.data.batching import make_batch, sentence_batches, token_batches
from seq2seq.data.dataset import encode_pairs, read_corpus
from seq2seq.data.tokenizers import CharTokenizer, SentencePieceTokenizer, WhitespaceTokenizer
from seq2seq.errors import DataError
from seq2seq.recipe import Corpus
from tests.conftest import write_pairs


def test_reads_aligned_files(tmp_path: Path) -> None:
    """Lines come back in order, without line ends, blank lines kept."""
    src, tgt = write_pairs(tmp_path, "x", [("a b", "b a"), ("", ""), ("c", "c")])
    assert read_corpus(Corpus(source=str(src), target=str(tgt)), "data.train") == (
        ["a b", "", "c"],
        ["b a", "", "c"],
    )


def test_limit(tmp_path: Path) -> None:
    """`limit` keeps the first N pairs."""
    src, tgt = write_pairs(tmp_path, "x", [("a", "b")] * 5)
    source, _ = read_corpus(Corpus(source=str(src), target=str(tgt), limit=2), "data.train")
    assert len(source) == 2


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A missing file names the recipe key and the path."""
    src, _ = write_pairs(tmp_path, "x", [("a", "b")])
    corpus = Corpus(source=str(src), target=str(tmp_path / "nope.tgt"))
    with pytest.raises(DataError, match=r"data.train.target: file .*nope.tgt not found"):
        read_corpus(corpus, "data.train")


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is an error, not an empty run."""
    src, tgt = write_pairs(tmp_path, "x", [("a", "b")])
    tgt.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_corpus(Corpus(source=str(src), target=str(tgt)), "data.train")


def test_mismatched_line_counts_name_both_counts(tmp_path: Path) -> None:
    """Misaligned files report both line counts."""
    src, tgt = write_pairs(tmp_path, "x", [("a", "b"), ("c", "d"), ("e", "f")])
    tgt.write_text("b\nd\n")
    with pytest.raises(DataError, match="has 3 lines but .* has 2"):
        read_corpus(Corpus(source=str(src), target=str(tgt)), "data.train")


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    """Bad bytes are reported with their line number."""
    src, tgt = write_pairs(tmp_path, "x", [("a", "b"), ("c", "d")])
    src.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        read_corpus(Corpus(source=str(src), target=str(tgt)), "data.train")


def test_datasets_jsonl(tmp_path: Path) -> None:
    """Local JSON lines load through Hugging Face `datasets` with named columns."""
    path = tmp_path / "pairs.jsonl"
    rows = [{"en": f"hello {i}", "de": f"hallo {i}"} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = Corpus(dataset="json", data_files=str(path), source_column="en", target_column="de")
    source, target = read_corpus(corpus, "data.train")
    assert source == [f"hello {i}" for i in range(4)]
    assert target == [f"hallo {i}" for i in range(4)]


def test_datasets_csv_missing_column(tmp_path: Path) -> None:
    """A wrong column name lists the columns there are."""
    path = tmp_path / "pairs.csv"
    path.write_text("src,tgt\na,b\n", encoding="utf-8")
    corpus = Corpus(dataset="csv", data_files=str(path), source_column="en", target_column="tgt")
    with pytest.raises(DataError, match=r"column 'en' not in the dataset; columns: src, tgt"):
        read_corpus(corpus, "data.train")


def test_datasets_missing_file(tmp_path: Path) -> None:
    """A missing data file is named before `datasets` is asked."""
    corpus = Corpus(dataset="json", data_files=str(tmp_path / "gone.jsonl"))
    with pytest.raises(DataError, match="gone.jsonl not found"):
        read_corpus(corpus, "data.train")


@pytest.mark.parametrize("cls", [WhitespaceTokenizer, CharTokenizer])
def test_vocab_tokenizers_round_trip(cls: type) -> None:
    """Specials take ids 0-3; text survives encode → decode; bytes restore the vocabulary."""
    tok = cls()
    tok.fit(["a b c", "b c d"])
    ids = tok.encode(["a b d"])[0]
    assert min(ids) >= 4
    assert tok.decode([ids]) == ["a b d"]
    other = cls()
    other.load_bytes(tok.to_bytes())
    assert other.encode(["c b"]) == tok.encode(["c b"])
    assert tok.encode(["zzz"])[0][0] == 1  # unknown


def test_sentencepiece_trains_and_round_trips() -> None:
    """A small unigram model reserves the specials and reproduces text."""
    lines = [f"the quick brown fox number {i} jumps over the lazy dog" for i in range(200)]
    tok = SentencePieceTokenizer(vocab_size=80)
    tok.fit(lines)
    assert 4 < tok.vocab_size <= 80
    ids = tok.encode(["the lazy fox jumps"])[0]
    assert tok.decode([ids]) == ["the lazy fox jumps"]
    again = SentencePieceTokenizer()
    again.load_bytes(tok.to_bytes())
    assert again.encode(["the dog"]) == tok.encode(["the dog"])
    assert tok.pieces(ids)[0].startswith("▁")


def test_sentencepiece_rejects_garbage_bytes() -> None:
    """A file that is not a model gives a DataError."""
    with pytest.raises(DataError, match="not a sentencepiece model"):
        SentencePieceTokenizer().load_bytes(b"definitely not a model")


def test_encode_pairs_filters_and_appends_eos() -> None:
    """Source ids end with </s>; empty and over-long pairs are dropped and counted."""
    tok = WhitespaceTokenizer()
    tok.fit(["a b c d e"])
    kept, dropped = encode_pairs(["a b", "", "a b c d e"], ["b", "a", "a"], tok, tok, 3, 4)
    assert dropped == 2
    assert kept.source == [[*tok.encode(["a b"])[0], 3]]
    assert kept.origin == [0]


def test_token_batches_respect_budget_and_cover_everything() -> None:
    """Every example once per epoch; sentences × longest side within the budget; seeded."""
    src = [(i % 17) + 1 for i in range(500)]
    tgt = [(i % 13) + 1 for i in range(500)]
    batches = token_batches(src, tgt, batch_tokens=60, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        widest = max(max(src[i], tgt[i] + 1) for i in batch)
        assert widest * len(batch) <= 60 or len(batch) == 1
    assert batches == token_batches(src, tgt, 60, seed=1, epoch=0)
    assert batches != token_batches(src, tgt, 60, seed=1, epoch=1)


def test_length_bucketing_keeps_padding_low() -> None:
    """Sorting inside buckets: padded tokens are a small share of the batch."""
    import random

    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(2000)]
    batches = token_batches(lengths, lengths, batch_tokens=500, seed=0, epoch=0)
    real = sum(lengths[i] + 1 for b in batches for i in b)
    padded = sum(max(lengths[i] + 1 for i in b) * len(b) for b in batches)
    assert real / padded > 0.9


def test_make_batch_shifts_target() -> None:
    """tgt_in starts with <s>, tgt_out ends with </s>, both padded with 0."""
    batch = make_batch([[5, 3], [6, 7, 3]], [[8], [9, 10]], [0, 1])
    assert batch.src.tolist() == [[5, 3, 0], [6, 7, 3]]
    assert batch.src_lengths.tolist() == [2, 3]
    assert batch.tgt_in.tolist() == [[2, 8, 0], [2, 9, 10]]
    assert batch.tgt_out.tolist() == [[8, 3, 0], [9, 10, 3]]
    assert batch.target_tokens == 5


def test_sentence_batches_cover_all() -> None:
    """Decoding batches hold every index once, similar lengths together."""
    batches = sentence_batches([5, 1, 3, 2, 4], 2)
    assert batches == [[1, 3], [2, 4], [0]]


def test_tsv_corpus(tmp_path: Path) -> None:
    """One file of source<TAB>target lines gives the same pairs as two files."""
    from seq2seq.data.dataset import read_corpus
    from seq2seq.recipe import Corpus

    (tmp_path / "c.tsv").write_text("a b\tx y\n\tz\nc\t\n", encoding="utf-8")
    source, target = read_corpus(Corpus(tsv=str(tmp_path / "c.tsv")), "data.train")
    assert source == ["a b", "", "c"]
    assert target == ["x y", "z", ""]
