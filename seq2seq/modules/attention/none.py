""" "none": no attention, for an attention-free encoder-decoder baseline."""

from __future__ import annotations

from seq2seq.registry import register


@register("attention", "none")
def no_attention(query_size: int, key_size: int) -> None:
    """No attention: the decoder sees only its initial state (same as `attention: null`)."""
