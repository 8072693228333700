"""The tokenized-corpus cache (`data.cache_dir`): training pairs as ids in Hugging Face `datasets`
Arrow files, memory-mapped, so memory stays flat as the corpus grows and a second run with the
same data and tokenizer starts without re-tokenizing.

Entries are keyed by a fingerprint of the data (each file's size, modification time and a hash
of its first and last MiB; a hub dataset's own fingerprint) and of the tokenizer (its settings
for the fitted-tokenizer entry, its serialized model for the ids). Changing a data file changes
the key. An entry is written under a temporary name and renamed when complete, so a crash or
two processes building the same entry never leave a half-written one.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from seq2seq.data.dataset import as_text, iter_text_lines, iter_tsv, load_table
from seq2seq.errors import DataError
from seq2seq.recipe import Corpus

log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bumped when the layout of an entry changes
SAMPLE = 1 << 20  # bytes hashed at each end of a file


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of both ends: cheap, and changes when the file does."""
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE))
        if stat.st_size > SAMPLE:
            handle.seek(max(SAMPLE, stat.st_size - SAMPLE))
            digest.update(handle.read(SAMPLE))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "hash": digest.hexdigest()}


def corpus_fingerprint(corpus: Corpus) -> dict[str, Any]:
    """What identifies a corpus's content: the recipe entry plus each local file's fingerprint."""
    if corpus.tsv is not None:
        files = [corpus.tsv]
    elif corpus.dataset is None:
        assert corpus.source is not None and corpus.target is not None
        files = [corpus.source, corpus.target]
    else:
        patterns = corpus.data_files
        patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
        files = sorted(f for p in patterns for f in (glob.glob(p) or [p]))
    for file in files:
        if not Path(file).is_file():
            raise DataError(f"data file {file} not found")
    return {"corpus": asdict(corpus), "files": [file_fingerprint(Path(f)) for f in files]}


def key_of(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def tokenizer_digest(tokenizers: dict[str, Any]) -> dict[str, str]:
    """Hashes of the serialized tokenizers (the ids depend on exactly these models)."""
    return {side: hashlib.sha256(t.to_bytes()).hexdigest() for side, t in tokenizers.items()}


def publish(tmp: Path, final: Path) -> None:
    """Move a finished entry into place; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def temporary(root: Path, name: str) -> Path:
    """A fresh scratch directory next to the entry it becomes."""
    root.mkdir(parents=True, exist_ok=True)
    return root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def raw_pairs(corpus: Corpus, label: str, scratch: Path) -> Any:
    """The corpus's text as an Arrow dataset with columns source, target (written to disk)."""
    import datasets

    datasets.disable_progress_bars()  # training shows its own progress

    if corpus.dataset is not None:
        table = load_table(corpus, label).select_columns(
            [corpus.source_column, corpus.target_column]
        )
        if corpus.source_column != "source" or corpus.target_column != "target":
            table = table.rename_columns(
                {corpus.source_column: "source", corpus.target_column: "target"}
            )
    else:
        try:
            table = datasets.Dataset.from_generator(
                file_pairs,
                gen_kwargs=pair_source(corpus, label),
                cache_dir=str(scratch),
                features=datasets.Features(
                    {"source": datasets.Value("string"), "target": datasets.Value("string")}
                ),
            )
        except Exception as exc:  # datasets wraps errors raised while reading
            raise unwrap_data_error(exc) from None
    if corpus.limit is not None:
        table = table.select(range(min(corpus.limit, len(table))))
    if not len(table):
        raise DataError(f"{label}: the corpus is empty")
    return table


def unwrap_data_error(exc: BaseException) -> BaseException:
    """Our DataError from inside a `datasets` wrapper (the message the user should see)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DataError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def pair_source(corpus: Corpus, label: str) -> dict[str, str | None]:
    """The arguments of `file_pairs` for a corpus of files (two aligned ones, or one TSV)."""
    return {"source": corpus.source, "target": corpus.target, "tsv": corpus.tsv, "label": label}


def file_pairs(
    source: str | None, target: str | None, tsv: str | None, label: str
) -> Iterator[dict[str, str]]:
    """Aligned pairs, one at a time (UTF-8 checked; line counts or TSV columns checked)."""
    if tsv is not None:
        for s, t in iter_tsv(Path(tsv), label):
            yield {"source": s, "target": t}
        return
    assert source is not None and target is not None
    src = iter_text_lines(Path(source), f"{label}.source")
    tgt = iter_text_lines(Path(target), f"{label}.target")
    counts = [0, 0]
    for s, t in itertools.zip_longest(src, tgt):
        if s is None or t is None:
            counts[s is None] += 1  # count the rest of the longer file, then report
            continue
        counts[0] += 1
        counts[1] += 1
        yield {"source": s, "target": t}
    if counts[0] != counts[1]:
        raise DataError(
            f"{label}: {source} has {counts[0]} lines but {target} has {counts[1]}; "
            "the files must be aligned line by line"
        )


def text_lines(table: Any, side: str) -> Iterator[str]:
    """The text of one side ("source" or "target"), read in batches."""
    for row, batch in enumerate(table.iter(batch_size=1000)):
        for offset, value in enumerate(batch[side]):
            yield as_text(value, "data.train", row * 1000 + offset)


class Encoder:
    """Picklable batch function for datasets.map: text pairs → kept id pairs and lengths."""

    def __init__(self, tokenizers: dict[str, Any], eos: int, max_length: int, label: str) -> None:
        self.tokenizers, self.eos, self.max_length = tokenizers, eos, max_length
        self.label = label

    def __call__(self, batch: dict[str, list[Any]], rows: list[int]) -> dict[str, list[Any]]:
        """Encode a batch of pairs (rows: their numbers) and drop empty and over-long ones."""
        texts = {
            side: [as_text(v, self.label, row) for v, row in zip(batch[side], rows, strict=True)]
            for side in ("source", "target")
        }
        source = self.tokenizers["source"].encode(texts["source"])
        target = self.tokenizers["target"].encode(texts["target"])
        out: dict[str, list[Any]] = {"src": [], "tgt": [], "src_len": [], "tgt_len": []}
        for s, t in zip(source, target, strict=True):
            if not s or not t or len(s) + 1 > self.max_length or len(t) + 1 > self.max_length:
                continue
            out["src"].append([*s, self.eos])
            out["tgt"].append(t)
            out["src_len"].append(len(s) + 1)
            out["tgt_len"].append(len(t))
        return out


class CachedExamples:
    """Tokenized training pairs memory-mapped from a cache entry."""

    def __init__(self, path: Path) -> None:
        import datasets

        self.path = path
        self.table = datasets.load_from_disk(str(path))
        self.ids = self.table.select_columns(["src", "tgt"])

    def __len__(self) -> int:
        return len(self.table)

    def lengths(self) -> tuple[list[int], list[int]]:
        """Source and target lengths of every pair (two integer columns, not the ids)."""
        data = self.table.data
        return data.column("src_len").to_pylist(), data.column("tgt_len").to_pylist()

    def take(self, indices: list[int]) -> tuple[list[list[int]], list[list[int]]]:
        """The ids of the pairs at `indices`, read from the memory-mapped table."""
        rows = self.ids[indices]
        return rows["src"], rows["tgt"]


class RawCorpus:
    """The training text as Arrow, made on first use in a scratch folder removed by close()."""

    def __init__(self, root: Path, corpus: Corpus, label: str) -> None:
        self.root, self.corpus, self.label = root, corpus, label
        self.scratch: Path | None = None
        self._table: Any = None

    @property
    def table(self) -> Any:
        """Columns source, target."""
        if self._table is None:
            self.scratch = temporary(self.root, "raw")
            self._table = raw_pairs(self.corpus, self.label, self.scratch)
        return self._table

    def close(self) -> None:
        """Remove the scratch folder."""
        self._table = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def load_tokenizer_entry(path: Path, build: Any) -> dict[str, Any] | None:
    """Tokenizers stored by `store_tokenizer_entry` (None when absent); `build()` makes one."""
    if not path.is_dir():
        return None
    if (path / "joint.bin").is_file():
        joint = build()
        joint.load_bytes((path / "joint.bin").read_bytes())
        return {"source": joint, "target": joint}
    loaded = {}
    for side in ("source", "target"):
        loaded[side] = build()
        loaded[side].load_bytes((path / f"{side}.bin").read_bytes())
    return loaded


def store_tokenizer_entry(path: Path, tokenizers: dict[str, Any]) -> None:
    """Keep fitted tokenizers so the next run on the same data does not fit them again."""
    tmp = temporary(path.parent, path.name)
    tmp.mkdir()
    if tokenizers["source"] is tokenizers["target"]:
        (tmp / "joint.bin").write_bytes(tokenizers["source"].to_bytes())
    else:
        for side in ("source", "target"):
            (tmp / f"{side}.bin").write_bytes(tokenizers[side].to_bytes())
    publish(tmp, path)


def build_examples(
    path: Path, raw: RawCorpus, encoder: Encoder, num_proc: int | None
) -> tuple[int, int]:
    """Tokenize the raw corpus into the entry at `path`; return (pairs read, pairs kept)."""
    import datasets

    table = raw.table
    procs = num_proc if num_proc is not None else (os.cpu_count() or 1)
    procs = max(1, min(procs, len(table) // 1000))  # small corpora: processes cost more
    assert raw.scratch is not None
    encoded = table.map(
        encoder,
        batched=True,
        with_indices=True,
        num_proc=procs if procs > 1 else None,
        remove_columns=table.column_names,
        cache_file_name=str(raw.scratch / "encoded.arrow"),
        new_fingerprint=path.name,
        features=datasets.Features(
            {
                "src": datasets.Sequence(datasets.Value("int32")),
                "tgt": datasets.Sequence(datasets.Value("int32")),
                "src_len": datasets.Value("int32"),
                "tgt_len": datasets.Value("int32"),
            }
        ),
        desc="tokenizing",
    )
    tmp = temporary(path.parent, path.name)
    encoded.save_to_disk(str(tmp))
    publish(tmp, path)
    return len(table), len(encoded)
