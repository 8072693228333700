"""The peers' data: one sentencepiece unigram model (8,000 pieces) trained on train.en + train.de,
every split pre-segmented into space-separated pieces, which both toolkits read as words.

Usage: python bench/peers/prepare_data.py [WORK_DIR]   (default ../peers-work; skips what exists)
"""

from __future__ import annotations

import sys
from pathlib import Path

import sentencepiece as spm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.measure import DATA, ROOT, read_text

SPLITS = ("train", "valid", "test")
LANGS = ("en", "de")


def default_work() -> Path:
    """../peers-work next to the repository (outside it)."""
    return (ROOT.parent / "peers-work").resolve()


def train_model(data: Path) -> Path:
    """The shared sentencepiece model, trained once."""
    model = data / "spm8k.model"
    if model.exists():
        return model
    data.mkdir(parents=True, exist_ok=True)  # a fresh machine has no work dir yet
    corpus = data / "spm_train.txt"
    with corpus.open("w", encoding="utf-8") as out:
        for lang in LANGS:
            out.write("\n".join(read_text(DATA / f"train.{lang}")) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(data / "spm8k"),
        vocab_size=8000,
        model_type="unigram",
        character_coverage=1.0,
        input_sentence_size=10_000_000,
        shuffle_input_sentence=True,
        num_threads=1,
        bos_id=-1,  # the toolkits add their own specials
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
        unk_piece="<unk>",
    )
    return model


def segment(model: Path, data: Path) -> None:
    """Write {split}.sp.{lang}: pieces separated by spaces."""
    processor = spm.SentencePieceProcessor(model_file=str(model))
    for split in SPLITS:
        for lang in LANGS:
            out = data / f"{split}.sp.{lang}"
            if out.exists():
                continue
            lines = read_text(DATA / f"{split}.{lang}")
            pieces = processor.encode([line.strip() for line in lines], out_type=str)
            tmp = out.with_suffix(".tmp")
            tmp.write_text("".join(" ".join(p) + "\n" for p in pieces), encoding="utf-8")
            tmp.rename(out)


def decode_pieces(model: Path, lines: list[str]) -> list[str]:
    """Space-separated pieces back to text."""
    processor = spm.SentencePieceProcessor(model_file=str(model))
    return [processor.decode(line.split()) for line in lines]


def target_tokens(data: Path, max_length: int = 100) -> tuple[int, int]:
    """Source and target tokens (+ </s>) of the training pairs within `max_length` pieces."""
    src = tgt = 0
    for s, t in zip(read_text(data / "train.sp.en"), read_text(data / "train.sp.de"), strict=True):
        ls, lt = len(s.split()), len(t.split())
        if 0 < ls <= max_length and 0 < lt <= max_length:
            src, tgt = src + ls + 1, tgt + lt + 1
    return src, tgt


def main() -> None:
    """Prepare WORK_DIR/data."""
    work = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else default_work()
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    segment(train_model(data), data)
    print(f"segmented data in {data}")


if __name__ == "__main__":
    main()
