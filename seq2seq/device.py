"""The --device option: "auto", "cpu", "cuda", "cuda:1", … to a torch.device, or one message."""

from __future__ import annotations

import torch

from seq2seq.errors import Seq2SeqError


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; an unavailable device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Seq2SeqError(f"--device {name}: CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise Seq2SeqError(f"--device {name}: {exc}") from exc
