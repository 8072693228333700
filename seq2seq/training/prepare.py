"""Everything before the first step: read data, fit or load tokenizers, encode examples."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from seq2seq import registry
from seq2seq.data.dataset import Examples, encode_pairs, read_corpus
from seq2seq.errors import DataError
from seq2seq.model import Specials
from seq2seq.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Tokenizers and encoded data for one run."""

    tokenizers: dict[str, Any]  # "source", "target" (the same object when joint)
    train: Examples
    valid: Examples | None
    valid_refs: list[str]  # raw reference text, aligned with `valid`


def fit_tokenizers(recipe: Recipe, source: list[str], target: list[str]) -> dict[str, Any]:
    """Train the tokenizer(s) named by the recipe on the training text."""
    spec = recipe.data.tokenizer
    if recipe.data.joint_vocab:
        joint = registry.build("tokenizer", spec, where="data.tokenizer")
        joint.fit(source + target)
        return {"source": joint, "target": joint}
    src_tok = registry.build("tokenizer", spec, where="data.tokenizer")
    tgt_tok = registry.build("tokenizer", spec, where="data.tokenizer")
    src_tok.fit(source)
    tgt_tok.fit(target)
    return {"source": src_tok, "target": tgt_tok}


def prepare(recipe: Recipe, tokenizers: dict[str, Any] | None = None) -> Prepared:
    """Read and encode the recipe's data; tokenizers are fitted unless given (resume)."""
    source, target = read_corpus(recipe.data.train, "data.train")
    valid_text = None
    if recipe.data.valid is not None:  # read before fitting so a bad file fails fast
        valid_text = read_corpus(recipe.data.valid, "data.valid")
    if tokenizers is None:
        tokenizers = fit_tokenizers(recipe, source, target)
    eos = Specials().eos
    train, dropped = encode_pairs(
        source, target, tokenizers["source"], tokenizers["target"], eos, recipe.data.max_length
    )
    if dropped:
        log.info(
            "dropped %d of %d training pairs (empty, or longer than %d pieces)",
            dropped,
            len(source),
            recipe.data.max_length,
        )
    if not len(train):
        raise DataError(
            f"no training pair is left after dropping empty pairs and pairs longer than "
            f"data.max_length={recipe.data.max_length} pieces; raise data.max_length"
        )
    valid, refs = None, []
    if valid_text is not None:
        pairs = [(s, t) for s, t in zip(*valid_text, strict=True) if s.strip() and t.strip()]
        if not pairs:
            raise DataError("data.valid: every validation pair has an empty side")
        v_src, v_tgt = [p[0] for p in pairs], [p[1] for p in pairs]
        valid, _ = encode_pairs(v_src, v_tgt, tokenizers["source"], tokenizers["target"], eos)
        refs = [v_tgt[i] for i in valid.origin]
    return Prepared(tokenizers, train, valid, refs)
