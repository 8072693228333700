"""build_model(): a Seq2Seq assembled from registered components, and its initialisation."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import nn

from seq2seq.errors import Problem, RecipeError
from seq2seq.model import Seq2Seq, Specials
from seq2seq.modules.copy import PointerGenerator
from seq2seq.recipe import ModelConfig
from seq2seq.registry import build


def _problem(path: str, message: str) -> RecipeError:
    return RecipeError("the recipe", [Problem(path, message)])


def build_model(
    cfg: ModelConfig,
    src_vocab_size: int,
    tgt_vocab_size: int,
    specials: Specials = Specials(),
    init_parameters: bool = True,
) -> Seq2Seq:
    """Assemble the model from registered components; sizes flow in as keyword arguments.

    `init_parameters=False` skips the recipe's initialisation, for weights loaded next.
    """
    src_embed = nn.Embedding(src_vocab_size, cfg.embedding_dim, padding_idx=specials.pad)
    if cfg.share_embeddings and src_vocab_size != tgt_vocab_size:
        raise _problem("model.share_embeddings", "needs one joint vocabulary")
    tgt_embed = (
        src_embed
        if cfg.share_embeddings
        else nn.Embedding(tgt_vocab_size, cfg.embedding_dim, padding_idx=specials.pad)
    )
    encoder = build("encoder", cfg.encoder, where="model.encoder", input_size=cfg.embedding_dim)
    make_attention: Any = None
    if cfg.attention is not None:
        make_attention = partial(
            build, "attention", cfg.attention, where="model.attention", key_size=encoder.output_size
        )
    decoder = build(
        "decoder",
        cfg.decoder,
        where="model.decoder",
        input_size=cfg.embedding_dim,
        memory_size=encoder.output_size,
        make_attention=make_attention,
    )
    if cfg.tie_output and decoder.hidden_size != cfg.embedding_dim:
        raise _problem(
            "model.tie_output",
            f"needs the decoder hidden_size ({decoder.hidden_size}) "
            f"equal to model.embedding_dim ({cfg.embedding_dim})",
        )
    copy = None
    if cfg.copy:
        if getattr(decoder, "attention", None) is None:
            raise _problem("model.copy", "copying points with attention; set model.attention")
        copy = PointerGenerator(decoder.hidden_size, encoder.output_size, cfg.embedding_dim)
    model = Seq2Seq(
        src_embed,
        tgt_embed,
        encoder,
        decoder,
        tgt_vocab_size,
        cfg.embedding_dropout,
        cfg.tie_output,
        specials,
        copy,
    )
    if init_parameters:
        initialize(model, cfg.init_scale)
    for name in cfg.freeze:
        for param in getattr(model, name).parameters():
            param.requires_grad_(False)
    return model


def initialize(model: Seq2Seq, scale: float | None) -> None:
    """Set every parameter, then zero the embeddings' pad rows.

    scale s: every parameter, biases and embeddings included, uniform in ±s (OpenNMT-py's
    param_init; on ddtp-de-en it learns far faster than the fan-in scheme, see the README).
    scale None: uniform ±1/√fan-in matrices, zero biases, N(0, 1/√E) embeddings.
    """
    for name, param in model.named_parameters():
        if scale is not None:
            nn.init.uniform_(param, -scale, scale)
        elif "embed" in name.split(".")[0] and param.dim() == 2:
            nn.init.normal_(param, std=param.size(1) ** -0.5)
        elif param.dim() >= 2:
            bound = 1.0 / math.sqrt(param.size(-1))
            nn.init.uniform_(param, -bound, bound)
        else:
            nn.init.zeros_(param)
    for module in (model.src_embed, model.tgt_embed):
        with torch.no_grad():
            module.weight[module.padding_idx or 0].zero_()


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (tied matrices counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
