"""Token-level cross-entropy with padding ignored and optional label smoothing (the reference
path; training computes it fused with the output projection, see modules/output.py)."""

from __future__ import annotations

from seq2seq.modules.output import sequence_loss

__all__ = ["sequence_loss"]
