"""Token-level cross-entropy with padding ignored and optional label smoothing."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def sequence_loss(
    logits: Tensor, targets: Tensor, pad_id: int = 0, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Summed loss over real tokens and the number of real tokens.

    Args:
        logits: (B, T, V) unnormalised scores.
        targets: (B, T) expected ids, `pad_id` where there is no token.
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=pad_id,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return total, (targets != pad_id).sum()
