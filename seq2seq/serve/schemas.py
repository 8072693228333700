"""What the HTTP API accepts and returns (pydantic models) and the size limits it enforces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BEAM_SIZE = 16
MAX_OUTPUT_LENGTH = 500


@dataclass(frozen=True)
class Limits:
    """Request size limits; larger requests get 413 with a message."""

    max_texts: int = 32  # texts in one request
    max_chars: int = 2000  # characters in one text
    max_body_bytes: int = 1_000_000  # the raw request body
    max_pending: int = 256  # requests waiting for the model; beyond it 503 (busy)
    batch_sentences: int = 64  # sentences the worker decodes together

    def to_dict(self) -> dict[str, Any]:
        """Plain data for /info."""
        return {**asdict(self), "max_beam_size": MAX_BEAM_SIZE, "max_length": MAX_OUTPUT_LENGTH}


class TranslateRequest(BaseModel):
    """POST /translate: one text or a list, and search options (unset: the recipe's)."""

    model_config = ConfigDict(extra="forbid")

    text: str | list[str] = Field(description="A text, or a list of texts translated in order.")
    search: Literal["greedy", "beam"] | None = Field(
        None, description="greedy or beam (default: the recipe's search when it is one of them)."
    )
    beam_size: int | None = Field(None, ge=1, le=MAX_BEAM_SIZE)
    n_best: int | None = Field(None, ge=1, le=MAX_BEAM_SIZE)
    length_penalty: float | None = Field(None, ge=0.0, le=5.0)
    max_length: int | None = Field(None, ge=1, le=MAX_OUTPUT_LENGTH)
    attention: bool = Field(False, description="Add source/target pieces and attention weights.")

    @model_validator(mode="after")
    def _beam_options_need_beam(self) -> TranslateRequest:
        options = ("beam_size", "n_best", "length_penalty")
        beam_only = [name for name in options if getattr(self, name) is not None]
        if self.search == "greedy" and beam_only:
            raise ValueError(f"{', '.join(beam_only)}: only for search 'beam', not 'greedy'")
        if self.n_best is not None and self.n_best > (self.beam_size or self.n_best):
            raise ValueError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        return self

    def texts(self) -> list[str]:
        """The texts as a list."""
        return [self.text] if isinstance(self.text, str) else list(self.text)


class HypothesisOut(BaseModel):
    """One output: the best comes first."""

    text: str
    score: float
    log_prob: float | None = None
    source_pieces: list[str] | None = None
    target_pieces: list[str] | None = None  # </s> included
    attention: list[list[float]] | None = None  # one row of source weights per target piece


class TranslationOut(BaseModel):
    """One input text's result; a blank text gives text "" and no hypotheses."""

    source: str
    text: str
    hypotheses: list[HypothesisOut]


class TranslateResponse(BaseModel):
    """POST /translate's answer: one translation per input text, in input order."""

    translations: list[TranslationOut]
    search: dict[str, Any]
