"""The Seq2Seq model (encode / step / forward with teacher forcing) and build_model()."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.errors import Problem, RecipeError
from seq2seq.modules.protocols import Decoder, DecoderState, Encoder
from seq2seq.recipe import ModelConfig
from seq2seq.registry import build


@dataclass(frozen=True)
class Specials:
    """Ids of the special tokens shared by tokenizers and model."""

    pad: int = 0
    unk: int = 1
    bos: int = 2
    eos: int = 3


class Seq2Seq(nn.Module):
    """Embeddings, an encoder, a decoder and the output projection ("generator")."""

    def __init__(
        self,
        src_embed: nn.Embedding,
        tgt_embed: nn.Embedding,
        encoder: Encoder,
        decoder: Decoder,
        vocab_size: int,
        embedding_dropout: float = 0.0,
        tie_output: bool = False,
        specials: Specials = Specials(),
    ) -> None:
        super().__init__()
        self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.encoder = encoder
        self.decoder = decoder
        self.embed_dropout = nn.Dropout(embedding_dropout)
        self.generator = nn.Linear(decoder.hidden_size, vocab_size)
        if tie_output:
            self.generator.weight = tgt_embed.weight
        self.specials = specials

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        """(B, S) source ids with (B,) lengths → the decoder's initial state."""
        encoded = self.encoder(self.embed_dropout(self.src_embed(src)), lengths)
        return self.decoder.init_state(encoded)

    def step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B,) previous tokens → log-probabilities (B, V) of the next token, next state."""
        features, state = self.decoder.step(self.tgt_embed(prev), state)
        return torch.log_softmax(self.generator(features).float(), dim=-1), state

    def features(
        self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        """Decoder features (B, T, H) for every target position."""
        state = self.encode(src, lengths)
        embedded = self.embed_dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        if teacher_forcing >= 1.0:
            parallel = getattr(self.decoder, "forward_sequence", None)
            whole = parallel(embedded, state) if parallel is not None else None
            if whole is not None:
                return whole  # type: ignore[no-any-return]
        steps = []
        prev_embedded = embedded[:, 0]
        for t in range(tgt_in.size(1)):
            out, state = self.decoder.step(prev_embedded, state)
            steps.append(out)
            if t + 1 == tgt_in.size(1):
                break
            prev_embedded = embedded[:, t + 1]
            if teacher_forcing < 1.0:  # scheduled sampling: some rows get the model's own guess
                guess = self.generator(out).argmax(-1)
                own = torch.rand(guess.shape, device=guess.device) >= teacher_forcing
                tokens = torch.where(own, guess, tgt_in[:, t + 1])
                prev_embedded = self.embed_dropout(self.tgt_embed(tokens))
        return torch.stack(steps, dim=1)

    def forward(
        self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        """Logits (B, T, V) for the target given (B, S) source and (B, T) shifted target."""
        logits: Tensor = self.generator(self.features(src, lengths, tgt_in, teacher_forcing))
        return logits


def build_model(
    cfg: ModelConfig,
    src_vocab_size: int,
    tgt_vocab_size: int,
    specials: Specials = Specials(),
) -> Seq2Seq:
    """Assemble the model from registered components; sizes flow in as keyword arguments."""
    src_embed = nn.Embedding(src_vocab_size, cfg.embedding_dim, padding_idx=specials.pad)
    if cfg.share_embeddings:
        if src_vocab_size != tgt_vocab_size:
            raise RecipeError(
                "the recipe", [Problem("model.share_embeddings", "needs one joint vocabulary")]
            )
        tgt_embed = src_embed
    else:
        tgt_embed = nn.Embedding(tgt_vocab_size, cfg.embedding_dim, padding_idx=specials.pad)
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
        raise RecipeError(
            "the recipe",
            [
                Problem(
                    "model.tie_output",
                    f"needs the decoder hidden_size ({decoder.hidden_size}) equal to "
                    f"model.embedding_dim ({cfg.embedding_dim})",
                )
            ],
        )
    model = Seq2Seq(
        src_embed,
        tgt_embed,
        encoder,
        decoder,
        tgt_vocab_size,
        cfg.embedding_dropout,
        cfg.tie_output,
        specials,
    )
    initialize(model)
    return model


def initialize(model: Seq2Seq) -> None:
    """Uniform ±1/√fan-in for matrices, zero biases, N(0, 1/√E) embeddings with a zero pad row."""
    for name, param in model.named_parameters():
        if "embed" in name.split(".")[0] and param.dim() == 2:
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
