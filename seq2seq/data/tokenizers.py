"""Tokenizers (text ↔ ids): "sentencepiece" (the default), "whitespace" and "char" (toy tasks).

Every tokenizer reserves ids 0–3 for <pad>, <unk>, <s>, </s> and round-trips through bytes, so
the run dir can store it as one file.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import sentencepiece as spm

from seq2seq.errors import DataError
from seq2seq.registry import register

SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>")


@register("tokenizer", "sentencepiece")
class SentencePieceTokenizer:
    """Sentencepiece subwords, trained on the training text unless `model` names a file."""

    def __init__(
        self,
        vocab_size: int = 8000,
        model_type: Literal["unigram", "bpe"] = "unigram",
        character_coverage: float = 1.0,
        model: str | None = None,
        max_sentences: int = 2_000_000,
    ) -> None:
        self.options: dict[str, Any] = {
            "vocab_size": vocab_size,
            "model_type": model_type,
            "character_coverage": character_coverage,
            "input_sentence_size": max_sentences,
        }
        self.model = model
        self.processor: spm.SentencePieceProcessor | None = None

    def fit(self, lines: Iterable[str]) -> None:
        """Train on `lines` (or read the given model file)."""
        if self.model is not None:
            path = Path(self.model)
            if not path.is_file():
                raise DataError(f"data.tokenizer.model: sentencepiece model {path} not found")
            self.load_bytes(path.read_bytes())
            return
        text = (line for line in lines if line.strip())  # streamed: sentencepiece samples
        first = next(text, None)
        if first is None:
            raise DataError("no non-empty training lines to train sentencepiece on")
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=itertools.chain([first], text),
            model_writer=proto,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            hard_vocab_limit=False,  # small corpora get fewer pieces instead of an error
            shuffle_input_sentence=True,
            minloglevel=2,
            num_threads=os.cpu_count() or 1,
            **self.options,
        )
        self.load_bytes(proto.getvalue())

    def load_bytes(self, data: bytes) -> None:
        """Load a serialized model."""
        try:
            processor = spm.SentencePieceProcessor(model_proto=data)
        except (RuntimeError, OSError) as exc:
            raise DataError(f"not a sentencepiece model: {exc}") from exc
        if [processor.id_to_piece(i) for i in range(4)] != list(SPECIAL_PIECES):
            raise DataError("the sentencepiece model must use ids 0-3 for <pad> <unk> <s> </s>")
        self.processor = processor

    def to_bytes(self) -> bytes:
        """The serialized model."""
        assert self.processor is not None
        return bytes(self.processor.serialized_model_proto())

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        assert self.processor is not None
        return int(self.processor.get_piece_size())

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts → id lists (no specials added)."""
        assert self.processor is not None
        return self.processor.encode(list(texts))

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Id lists → texts."""
        assert self.processor is not None
        return [self.processor.decode(list(seq)) for seq in ids]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Ids → readable pieces, for attention plots and n-best output."""
        assert self.processor is not None
        return [self.processor.id_to_piece(i) for i in ids]


class VocabTokenizer:
    """Splits text by a fixed rule and maps tokens to ids with a counted vocabulary."""

    def __init__(self, max_size: int = 50_000, min_freq: int = 1) -> None:
        self.max_size = max_size
        self.min_freq = min_freq
        self.tokens: list[str] = list(SPECIAL_PIECES)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    def split(self, text: str) -> list[str]:
        """Text → tokens."""
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        """Tokens → text."""
        raise NotImplementedError

    def fit(self, lines: Iterable[str]) -> None:
        """Count tokens and keep the most frequent ones."""
        counts = Counter(token for line in lines for token in self.split(line))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = [t for t, n in ranked if n >= self.min_freq and t not in SPECIAL_PIECES]
        self.tokens = list(SPECIAL_PIECES) + keep[: max(self.max_size - 4, 0)]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def to_bytes(self) -> bytes:
        """The vocabulary as JSON."""
        return json.dumps({"tokens": self.tokens}, ensure_ascii=False).encode("utf-8")

    def load_bytes(self, data: bytes) -> None:
        """Load a vocabulary written by `to_bytes`."""
        try:
            tokens = json.loads(data.decode("utf-8"))["tokens"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"not a vocabulary file: {exc}") from exc
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.tokens)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts → id lists; unknown tokens map to <unk> (1)."""
        return [[self.index.get(t, 1) for t in self.split(text)] for text in texts]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Id lists → texts; special ids are skipped."""
        return [self.join([self.tokens[i] for i in seq if i >= 4]) for seq in ids]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Ids → tokens."""
        return [self.tokens[i] for i in ids]


@register("tokenizer", "whitespace")
class WhitespaceTokenizer(VocabTokenizer):
    """Tokens are whitespace-separated words; for pre-tokenized text and toy tasks."""

    def __init__(self, max_size: int = 50_000, min_freq: int = 1) -> None:
        super().__init__(max_size, min_freq)

    def split(self, text: str) -> list[str]:
        """Split on runs of whitespace."""
        return text.split()

    def join(self, tokens: list[str]) -> str:
        """Join with single spaces."""
        return " ".join(tokens)


@register("tokenizer", "char")
class CharTokenizer(VocabTokenizer):
    """Tokens are single characters (spaces included)."""

    def __init__(self, max_size: int = 50_000, min_freq: int = 1) -> None:
        super().__init__(max_size, min_freq)

    def split(self, text: str) -> list[str]:
        """Every character is a token."""
        return list(text)

    def join(self, tokens: list[str]) -> str:
        """Concatenate."""
        return "".join(tokens)
