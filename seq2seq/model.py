"""The Seq2Seq model: encode, step, and run with teacher forcing (assemble.py builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.modules.copy import PointerGenerator
from seq2seq.modules.derived import forget_derived
from seq2seq.modules.dropout import Dropout
from seq2seq.modules.output import projected_cross_entropy, sequence_loss
from seq2seq.modules.projection import cache_projection, project, set_output_precision
from seq2seq.modules.protocols import Decoder, DecoderState, Encoder


@dataclass(frozen=True)
class Specials:
    """Ids of the special tokens shared by tokenizers and model."""

    pad: int = 0
    unk: int = 1
    bos: int = 2
    eos: int = 3


class ModelOutput(NamedTuple):
    """What a teacher-forced pass returns."""

    scores: Tensor | None  # (B, T, V) logits (log-probabilities when copying); None with `loss`
    weights: Tensor | None  # (B, T, S) attention weights
    coverage_loss: Tensor | None  # (B, T) Σ_s min(a_ts, coverage_ts), when asked for
    loss: Tensor | None = None  # summed token cross-entropy, when targets were given


class Seq2Seq(nn.Module):
    """Embeddings, an encoder, a decoder, the output projection ("generator"), optional copy."""

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
        copy: PointerGenerator | None = None,
    ) -> None:
        super().__init__()
        self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.encoder = encoder
        self.decoder = decoder
        self.embed_dropout = Dropout(embedding_dropout)
        self.generator = nn.Linear(decoder.hidden_size, vocab_size)
        if tie_output:
            self.generator.weight = tgt_embed.weight
        self.copy = copy
        self.specials = specials

    def train(self, mode: bool = True) -> Seq2Seq:
        """nn.Module.train; entering training also frees what decoding derived from the weights
        (the output layer's Wᵀ, the decoder's gate table) and sets the output layer's decoding
        precision back to fp32 (validation decodes as the run's checkpoints will be judged)."""
        if mode:
            forget_derived(self)
            set_output_precision(self, "fp32")
        return super().train(mode)

    def prepare_decoding(self) -> None:
        """Derive decoding's copies of the weights now: forked decoding workers then share them
        instead of each making its own."""
        cache_projection(self)
        prepare_tokens = getattr(self.decoder, "prepare_tokens", None)
        if prepare_tokens is not None and self.copy is None:
            with torch.no_grad():  # as decoding runs
                prepare_tokens(self.tgt_embed)

    @property
    def shares_source(self) -> bool:
        """Whether `step` takes states with memory held once per sentence (`beams` > 1)."""
        return bool(getattr(self.decoder, "shares_source", False))

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        """(B, S) source ids with (B,) lengths → the decoder's initial state."""
        encoded = self.encoder(self.embed_dropout(self.src_embed(src)), lengths)
        state = self.decoder.init_state(encoded)
        if self.copy is not None:
            state.extra["src"] = src
        return state

    def _scores(
        self,
        features: Tensor,
        state: DecoderState,
        embedded: Tensor | None,
        context: Tensor | None,
        weights: Tensor | None,
    ) -> Tensor:
        """(B, T, ·) inputs → logits, or log-probabilities with copying.

        `embedded` (the decoder's inputs) is None on the `step_tokens` path (never with copying)."""
        logits = project(self.generator, features)
        if self.copy is None:
            return logits
        assert embedded is not None and context is not None and weights is not None
        mixed: Tensor = self.copy(logits, features, context, weights, embedded, state.extra["src"])
        return mixed

    def step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B,) previous tokens → log-probabilities (B, V) of the next token, next state."""
        step_tokens = getattr(self.decoder, "step_tokens", None)
        embedded = None
        if step_tokens is not None and self.copy is None:  # copying needs the embedding too
            features, state = step_tokens(prev, self.tgt_embed, state)
        else:
            embedded = self.tgt_embed(prev)
            features, state = self.decoder.step(embedded, state)
        scores = self._scores(
            features.unsqueeze(1),
            state,
            _one(embedded),
            _one(state.context),
            _one(state.weights),
        ).squeeze(1)
        if self.copy is not None:
            return scores, state
        return torch.log_softmax(scores.float(), dim=-1), state

    def run(
        self,
        src: Tensor,
        lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        with_coverage: bool = False,
        targets: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> ModelOutput:
        """Score every target position given (B, S) source and (B, T) shifted target.

        With teacher_forcing < 1 each row is fed the model's own previous guess with
        probability 1 − teacher_forcing (scheduled sampling). Given (B, T) `targets`, the
        summed token loss comes back in `loss`; without copying it is computed together with
        the output projection (modules/output.py) and `scores` is None.
        """
        state = self.encode(src, lengths)
        embedded = self.embed_dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        whole = None
        if teacher_forcing >= 1.0:
            parallel = getattr(self.decoder, "forward_sequence", None)
            whole = parallel(embedded, state) if parallel is not None else None
        if whole is not None:
            features, context, weights = whole
        else:
            features, context, weights, embedded = self._steps(
                state, embedded, tgt_in, teacher_forcing
            )
        coverage_loss = None
        if with_coverage and weights is not None:
            coverage = weights.cumsum(dim=1) - weights  # Σ of the earlier steps' weights
            coverage_loss = torch.minimum(weights, coverage).sum(-1)
        if targets is not None and self.copy is None:
            pad = self.specials.pad
            fused, _ = projected_cross_entropy(
                features, self.generator, targets, pad, label_smoothing
            )
            return ModelOutput(None, weights, coverage_loss, fused)
        scores = self._scores(features, state, embedded, context, weights)
        if targets is None:
            return ModelOutput(scores, weights, coverage_loss)
        loss, _ = sequence_loss(scores, targets, self.specials.pad, label_smoothing)
        return ModelOutput(scores, weights, coverage_loss, loss)

    def _steps(
        self, state: DecoderState, embedded: Tensor, tgt_in: Tensor, teacher_forcing: float
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
        """Step through the target; return stacked features, contexts, weights, inputs."""
        outs, contexts, weights, inputs = [], [], [], []
        current = embedded[:, 0]
        for t in range(tgt_in.size(1)):
            inputs.append(current)
            out, state = self.decoder.step(current, state)
            outs.append(out)
            contexts.append(state.context)
            weights.append(state.weights)
            if t + 1 == tgt_in.size(1):
                break
            current = embedded[:, t + 1]
            if teacher_forcing < 1.0:  # the model's own guess, copying included
                guess = self._scores(
                    out[:, None], state, current[:, None], _one(state.context), _one(state.weights)
                ).argmax(-1)[:, 0]
                own = torch.rand(guess.shape, device=guess.device) >= teacher_forcing
                tokens = torch.where(own, guess, tgt_in[:, t + 1])
                current = self.embed_dropout(self.tgt_embed(tokens))

        def stack(items: list[Tensor | None]) -> Tensor | None:
            return None if items[0] is None else torch.stack(items, 1)  # type: ignore[arg-type]

        return torch.stack(outs, 1), stack(contexts), stack(weights), torch.stack(inputs, 1)

    def forward(
        self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        """Scores (B, T, V) for the target: logits, or log-probabilities with copying."""
        scores = self.run(src, lengths, tgt_in, teacher_forcing).scores
        assert scores is not None  # no targets given: always projected
        return scores


def _one(tensor: Tensor | None) -> Tensor | None:
    """(B, ·) → (B, 1, ·): a single step shaped as a sequence."""
    return None if tensor is None else tensor.unsqueeze(1)
