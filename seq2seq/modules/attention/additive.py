"""Additive attention: "bahdanau" (with optional coverage), "concat" and "location"."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.modules import low_products
from seq2seq.modules.attention import as_steps, attend, from_steps
from seq2seq.modules.attention.additive_scores import additive_scores
from seq2seq.modules.protocols import AlignmentHistory
from seq2seq.registry import register


class AdditiveAttention(nn.Module):
    """score = vᵀ tanh(W q + U k + extra), where subclasses may add a history term."""

    needs_history = False

    def __init__(
        self, query_size: int, key_size: int, hidden_size: int | None, query_bias: bool = True
    ) -> None:
        super().__init__()
        hidden = hidden_size or key_size
        self.key_proj = nn.Linear(key_size, hidden, bias=not query_bias)
        self.query_proj = nn.Linear(query_size, hidden, bias=query_bias)
        self.energy = nn.Linear(hidden, 1, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        """(B, S, M) → projected keys 2 U k (B, S, A), once per source batch (see forward)."""
        return 2.0 * low_products.linear(self.key_proj, memory)

    def history_term(self, history: AlignmentHistory) -> Tensor | None:
        """(B, S, A) added inside the tanh, or None."""
        return None

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        history: AlignmentHistory | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Query (B[, T], H) → context (B[, T], M), weights (B[, T], S).

        vᵀ tanh(h) = 2 vᵀ σ(2h) − Σv, and a constant added to every score of a row leaves the
        softmax unchanged: the scores are computed as 2 vᵀ σ(2h), with the 2 folded into the
        keys (prepare) and the query. The same weights, faster: σ of a sum factors,
        σ(q + k) = 1 / (1 + e⁻ᵠ e⁻ᵏ), which leaves a multiply-add and a reciprocal per element of
        the (B, T, S, A) sum, the largest tensor of a step (additive_scores.py); and where σ
        is taken of the sum itself it costs about a quarter of tanh on an AMD EPYC (AVX2).
        """
        query, single = as_steps(query)
        extra = self.history_term(history) if history is not None else None
        if extra is not None:
            keys = keys + 2.0 * extra
        # Σ v σ over the (B, T, S, A) sum, in cache-sized blocks (additive_scores.py)
        queries = 2.0 * low_products.linear(self.query_proj, query)
        scores = 2.0 * additive_scores(queries, keys, self.energy)
        return from_steps(*attend(scores, memory, mask), single)


@register("attention", "bahdanau")
class BahdanauAttention(AdditiveAttention):
    """Additive attention (Bahdanau et al., 2015): score = vᵀ tanh(W q + U k).

    With `coverage` (See et al., 2017) the running sum c of past weights enters the score:
    vᵀ tanh(W q + U k + w c); train it with train.coverage_loss.
    """

    def __init__(
        self, query_size: int, key_size: int, hidden_size: int | None = None, coverage: bool = False
    ) -> None:
        super().__init__(query_size, key_size, hidden_size)
        self.coverage_proj = nn.Linear(1, self.energy.in_features, bias=False) if coverage else None
        self.needs_history = coverage

    def history_term(self, history: AlignmentHistory) -> Tensor | None:
        """w · coverage, (B, S, A)."""
        if self.coverage_proj is None:
            return None
        return self.coverage_proj(history.coverage.unsqueeze(-1))


@register("attention", "concat")
class ConcatAttention(AdditiveAttention):
    """Luong et al. (2015) concat: score = vᵀ tanh(W [q; k] + b).

    W [q; k] splits into W₁ q + W₂ k, so this is the additive form with the bias on the key side
    (computed once per source) and its own hidden size.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int | None = None) -> None:
        super().__init__(query_size, key_size, hidden_size, query_bias=False)


@register("attention", "location")
class LocationAttention(AdditiveAttention):
    """Location-aware attention (Chorowski et al., 2015): features F * α_{i-1} of the previous
    alignment, from a 1-D convolution, enter the additive score: vᵀ tanh(W q + U k + V f)."""

    needs_history = True

    def __init__(
        self,
        query_size: int,
        key_size: int,
        hidden_size: int | None = None,
        channels: int = 10,
        kernel_size: int = 31,
    ) -> None:
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        super().__init__(query_size, key_size, hidden_size)
        self.conv = nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.location_proj = nn.Linear(channels, self.energy.in_features, bias=False)

    def history_term(self, history: AlignmentHistory) -> Tensor | None:
        """V (F * α_{i-1}), (B, S, A)."""
        features = self.conv(history.previous.unsqueeze(1))  # (B, C, S)
        return self.location_proj(features.transpose(1, 2))
