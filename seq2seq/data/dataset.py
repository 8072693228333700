"""Read parallel text (line-aligned files or Hugging Face `datasets`) and turn it into ids."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.errors import DataError
from seq2seq.recipe import Corpus

log = logging.getLogger(__name__)


def iter_text_lines(path: Path, label: str, streams: bool = False) -> Iterator[str]:
    """Lines of a UTF-8 file without their line ends; bad bytes name the line number.

    With `streams`, a named pipe or a device is read too (once, as it comes).
    """
    if not path.exists():
        raise DataError(f"{label}: file {path} not found")
    if path.is_dir() or not (path.is_file() or streams):
        raise DataError(f"{label}: {path} is not a file")
    with path.open("rb") as handle:
        yield from decode_lines(handle, f"{label}: {path}")


def decode_lines(handle: Iterable[bytes], where: str) -> Iterator[str]:
    """Decode a binary line stream as UTF-8, naming the line of the first bad byte."""
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{where} line {number} is not valid UTF-8 "
                f"(byte {exc.start} of the line: {raw[exc.start : exc.start + 1]!r}); "
                "convert the text to UTF-8, e.g. with iconv"
            ) from exc
        yield line.rstrip("\r\n")


def read_lines(path: Path, label: str) -> list[str]:
    """All lines of a UTF-8 text file; an empty file is an error."""
    lines = list(iter_text_lines(path, label))
    if not lines:
        raise DataError(f"{label}: file {path} is empty")
    return lines


def _read_files(corpus: Corpus, label: str) -> tuple[list[str], list[str]]:
    assert corpus.source is not None and corpus.target is not None
    source = read_lines(Path(corpus.source), f"{label}.source")
    target = read_lines(Path(corpus.target), f"{label}.target")
    if len(source) != len(target):
        raise DataError(
            f"{label}: {corpus.source} has {len(source)} lines but {corpus.target} has "
            f"{len(target)}; the files must be aligned line by line"
        )
    return source, target


def iter_tsv(path: Path, label: str) -> Iterator[tuple[str, str]]:
    """(source, target) from each `source<TAB>target` line of a file, one at a time."""
    for number, line in enumerate(iter_text_lines(path, f"{label}.tsv"), start=1):
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{label}.tsv: {path} line {number} has {len(columns)} tab-separated "
                "columns; each line must be `source<TAB>target` (no tabs inside the text)"
            )
        yield columns[0], columns[1]


def _read_tsv(corpus: Corpus, label: str) -> tuple[list[str], list[str]]:
    """Source and target from one file of `source<TAB>target` lines."""
    assert corpus.tsv is not None
    pairs = list(iter_tsv(Path(corpus.tsv), label))
    if not pairs:
        raise DataError(f"{label}.tsv: file {corpus.tsv} is empty")
    return [s for s, _ in pairs], [t for _, t in pairs]


def load_table(corpus: Corpus, label: str) -> Any:
    """The corpus's `datasets` table (Arrow, cached by datasets), its columns checked."""
    import datasets  # imported here: it is slow to import and only this path needs it

    assert corpus.dataset is not None
    files = corpus.data_files
    for file in [files] if isinstance(files, str) else files or []:
        if not any(ch in file for ch in "*?[") and not Path(file).exists():
            raise DataError(f"{label}.data_files: file {file} not found")
    # local files form a single split named "train"; hub datasets have their own splits
    split = corpus.split or ("train" if files or label == "data.train" else "validation")
    try:
        table: Any = datasets.load_dataset(
            corpus.dataset, name=corpus.config, data_files=files, split=split
        )
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise DataError(f"{label}: could not load dataset '{corpus.dataset}': {exc}") from exc
    except Exception as exc:  # datasets raises many error types (network, builder, schema)
        raise DataError(
            f"{label}: loading dataset '{corpus.dataset}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    check_columns(corpus, label, list(table.column_names))
    if not len(table):
        raise DataError(f"{label}: dataset '{corpus.dataset}' split '{split}' is empty")
    return table


def check_columns(corpus: Corpus, label: str, columns: list[str]) -> None:
    """The recipe's source and target columns must exist."""
    for role, column in (
        ("source_column", corpus.source_column),
        ("target_column", corpus.target_column),
    ):
        if column not in columns:
            raise DataError(
                f"{label}.{role}: column '{column}' not in the dataset; "
                f"columns: {', '.join(columns)}"
            )


def _read_dataset(corpus: Corpus, label: str) -> tuple[list[str], list[str]]:
    table = load_table(corpus, label)
    source = [as_text(v, label, i) for i, v in enumerate(table[corpus.source_column])]
    target = [as_text(v, label, i) for i, v in enumerate(table[corpus.target_column])]
    return source, target


def as_text(value: Any, label: str, row: int) -> str:
    """A dataset cell as one line of text (None → empty; newlines → spaces)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{label}: row {row} holds {type(value).__name__}, not text")
    return " ".join(value.split("\n"))


def read_corpus(corpus: Corpus, label: str) -> tuple[list[str], list[str]]:
    """Source and target texts of a recipe split, aligned, cut to `limit`."""
    if corpus.dataset is not None:
        source, target = _read_dataset(corpus, label)
    elif corpus.tsv is not None:
        source, target = _read_tsv(corpus, label)
    else:
        source, target = _read_files(corpus, label)
    if corpus.limit is not None:
        source, target = source[: corpus.limit], target[: corpus.limit]
    return source, target


@dataclass
class Examples:
    """Tokenized pairs: source ids end with </s>; target ids carry no specials."""

    source: list[list[int]]
    target: list[list[int]]
    origin: list[int]  # index of each kept pair in the text it came from

    def __len__(self) -> int:
        return len(self.source)

    def lengths(self) -> tuple[list[int], list[int]]:
        """Source and target lengths of every pair."""
        return [len(s) for s in self.source], [len(t) for t in self.target]

    def take(self, indices: list[int]) -> tuple[list[list[int]], list[list[int]]]:
        """The ids of the pairs at `indices`."""
        return [self.source[i] for i in indices], [self.target[i] for i in indices]


def encode_pairs(
    source: list[str],
    target: list[str],
    src_tok: Any,
    tgt_tok: Any,
    eos: int,
    max_length: int | None = None,
) -> tuple[Examples, int]:
    """Tokenize pairs; drop empty ones and those over `max_length`. Returns (kept, dropped)."""
    src_ids = src_tok.encode(source)
    tgt_ids = tgt_tok.encode(target)
    kept = Examples([], [], [])
    dropped = 0
    for index, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        too_long = max_length is not None and (len(s) + 1 > max_length or len(t) + 1 > max_length)
        if not s or not t or too_long:
            dropped += 1
            continue
        kept.source.append([*s, eos])
        kept.target.append(t)
        kept.origin.append(index)
    return kept, dropped
