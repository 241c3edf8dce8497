"""Input checks at every model's entry point: token ids and masks of the batch formats in CONTRIBUTING.md.

Each model checks its inputs once, where they enter (``forward`` / ``encode`` / ``decode`` / ``start_decoding``),
not in every layer: shapes are compared without touching the data, and a check that must read the data (padding
layout) reads one or two numbers per call. Token ids are range-checked by :class:`ut.nn.embedding.TokenEmbedding`.

- :func:`token_mask`: ids must be ``[B, L]`` with L >= 1; a given mask must be ``Bool[B, L]`` of the same shape
  (a 1-D or wrong-length mask is an error even when it allows everything); a missing mask is inferred from
  ``pad_id`` (True where ``ids != pad_id``), the same rule for sources and targets. :func:`source_inputs` applies
  it to an encoder's source and gives its positions (the one place every encoder resolves ``src_mask``).
- :func:`check_right_padded`: the targets of an encoder-decoder, whose causal self-attention hides padding only
  when it sits after every real token.
- :func:`lm_padding`: the decoder-only models take left OR right padding; a row with a hole (a False between
  True values) would be attended where the model drops the key mask for right-padded batches, so it is an error.
  :func:`lm_forward_masks` gives a decoder-only model's token mask, positions and self-attention mask.

Shape legend: B batch, L length, S source length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ut.nn.attention import key_padding_mask
from ut.nn.positions import position_ids


def token_mask(ids: Tensor, mask: Tensor | None, pad_id: int, ids_name: str, mask_name: str) -> Tensor:
    """``ids`` Long[B, L] and its mask (or None) -> the real-token mask Bool[B, L]; shapes only, no device read."""
    if ids.dim() != 2:
        raise ValueError(f"{ids_name} must be token ids of shape [B, L], got shape {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise ValueError(f"{ids_name} has length 0 (shape {tuple(ids.shape)}): every sequence needs a token")
    if mask is None:
        return ids != pad_id
    if mask.shape != ids.shape:
        raise ValueError(f"{mask_name} must have the shape of {ids_name}, {list(ids.shape)} ([B, L], True on real "
                         f"tokens), got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{mask_name} must be a bool tensor (True on real tokens), got {mask.dtype}")
    return mask


def _bad_rows(bad: Tensor, limit: int = 5) -> list[int]:
    return bad.nonzero().flatten()[:limit].tolist()


def check_right_padded(mask: Tensor, name: str) -> None:
    """Raise unless every row of ``mask`` Bool[B, L] is real tokens followed by padding (one read)."""
    if mask.shape[1] < 2 or torch.compiler.is_compiling():
        return
    hole = mask[:, 1:] & ~mask[:, :-1]  # a real token after a padding position
    if bool(hole.any()):
        raise ValueError(f"{name} must be right-padded (real tokens, then padding); rows {_bad_rows(hole.any(1))} "
                         f"have a real token after padding")


def lm_padding(mask: Tensor, name: str) -> bool:
    """Check that every row of ``mask`` Bool[B, L] is left- or right-padded; return whether every row starts with
    a real token (then no real token can see a pad through causal attention). One read of two numbers."""
    if torch.compiler.is_compiling():
        return False  # keep the key mask: correct for any layout
    hole = (mask[:, 1:] != mask[:, :-1]).sum(1) > 1  # more than one change: a False between True values
    starts_real, any_hole = torch.stack([mask[:, 0].all(), hole.any()]).tolist()
    if any_hole:
        raise ValueError(f"{name} must be left- or right-padded (padding only at one end); rows {_bad_rows(hole)} "
                         f"have padding between real tokens")
    return bool(starts_real)


def source_inputs(src: Tensor, src_mask: Tensor | None, pad_id: int,
                  src_pos_offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """An encoder's source Long[B, S] -> (its real-token mask Bool[B, S], positions Long[B, S] from the offset)."""
    src_mask = token_mask(src, src_mask, pad_id, "src", "src_mask")
    return src_mask, position_ids(src.shape[1], src.shape[0], src_pos_offset, src.device)


def lm_forward_masks(input_ids: Tensor, attention_mask: Tensor | None, positions: Tensor | None,
                     pad_id: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Whole-sequence LM inputs -> (token mask Bool[B, L], positions Long[B, L] counting real tokens only,
    self-attention key-padding mask or None). The key mask only matters when a real token could see a pad, i.e.
    with left padding (right padding sits after every real token, hidden by causality). A missing mask is inferred
    from ``pad_id``; a mask of another shape, or with padding between real tokens, is an error."""
    attention_mask = token_mask(input_ids, attention_mask, pad_id, "input_ids", "attention_mask")
    if positions is None:
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    elif positions.shape != input_ids.shape:
        raise ValueError(f"position_ids must have the shape of input_ids, {list(input_ids.shape)}, "
                         f"got {list(positions.shape)}")
    self_mask = None if lm_padding(attention_mask, "attention_mask") else key_padding_mask(attention_mask)
    return attention_mask, positions, self_mask
