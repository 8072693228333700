"""Ensembles: several models trained with the same tokenizer decode as one, averaging their
log-probabilities at every step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.bundle import Loaded
from seq2seq.errors import BundleError
from seq2seq.model import Seq2Seq
from seq2seq.modules.protocols import DecoderState


@dataclass
class EnsembleState:
    """One decoder state per member; rows are reordered together."""

    members: list[DecoderState]

    def select(self, index: Tensor) -> EnsembleState:
        """Rows `index` of every member's state."""
        return EnsembleState([state.select(index) for state in self.members])

    def reorder_beams(self, index: Tensor) -> EnsembleState:
        """Every member's DecoderState.reorder_beams."""
        return EnsembleState([state.reorder_beams(index) for state in self.members])

    def expand_beams(self, beams: int) -> EnsembleState:
        """Every member's DecoderState.expand_beams."""
        return EnsembleState([state.expand_beams(beams) for state in self.members])

    def source_mask(self, row: int) -> Tensor:
        """(S,) source mask of hypothesis row `row`."""
        return self.members[0].source_mask(row)

    @property
    def mask(self) -> Tensor:
        """(B, S) source mask, one row per sentence with beams (the same for every member)."""
        return self.members[0].mask

    @property
    def weights(self) -> Tensor | None:
        """Mean attention weights of the members that attend."""
        found = [s.weights for s in self.members if s.weights is not None]
        return torch.stack(found).mean(0) if found else None

    @property
    def head_weights(self) -> Tensor | None:
        """None: the heads of different models do not line up, so only mean weights combine."""
        return None

    @property
    def coverage(self) -> Tensor | None:
        """Mean coverage of the members that attend."""
        found = [s.coverage for s in self.members if s.coverage is not None]
        return torch.stack(found).mean(0) if found else None


class Ensemble(nn.Module):
    """Decodes with several Seq2Seq models; next-token scores are their mean log-probability,
    renormalised."""

    def __init__(self, models: Sequence[Seq2Seq]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)  # registered, so .eval() and devices reach them
        self.models = list(models)
        self.specials = models[0].specials

    @property
    def shares_source(self) -> bool:
        """Whether every member's decoder takes states with memory held once per sentence."""
        return all(getattr(m, "shares_source", False) for m in self.models)  # exports: none

    def encode(self, src: Tensor, lengths: Tensor) -> EnsembleState:
        """Each member encodes the same source."""
        return EnsembleState([m.encode(src, lengths) for m in self.models])

    def step(self, prev: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState]:
        """(B,) previous tokens → averaged log-probabilities (B, V), next state."""
        outputs = [m.step(prev, s) for m, s in zip(self.models, state.members, strict=True)]
        mean = torch.stack([log_probs for log_probs, _ in outputs]).mean(0)
        return torch.log_softmax(mean, dim=-1), EnsembleState([s for _, s in outputs])


def combine(runs: Sequence[Loaded]) -> Loaded:
    """One Loaded whose model is the ensemble of `runs`; their tokenizers must be identical."""
    first = runs[0]
    for other in runs[1:]:
        for side in ("source", "target"):
            if first.tokenizers[side].to_bytes() != other.tokenizers[side].to_bytes():
                raise BundleError(
                    f"cannot ensemble {first.checkpoint.parents[1]} with "
                    f"{other.checkpoint.parents[1]}: their {side} vocabularies differ; an "
                    "ensemble needs models trained with the same tokenizer"
                )
    model = Ensemble([run.model for run in runs])
    return Loaded(first.recipe, model, first.tokenizers, first.checkpoint, first.meta)  # type: ignore[arg-type]
