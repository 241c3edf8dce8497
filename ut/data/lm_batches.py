"""Language-model batches over ``[input; sep; target]``: the T-D training format of Liu et al. 2018, §4.2.

"Generating Wikipedia by Summarizing Long Sequences": drop the encoder, concatenate input and target with a
separator and train a language model on the sequence (``ut/models/decoder_only.py``, ``universal_decoder_only.py``).
The loss covers the target only by default (``loss_on="target"``) or the whole sequence (``"all"``), a data choice
(``WikiSumDataModule(loss_on=...)``). Batch keys: CONTRIBUTING.md (LM batches).

Shape legend: B batch, L length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pack_input_target(inputs: list[list[int]], targets: list[list[int]], sep_id: int, eos_id: int, pad_id: int,
                      loss_on: str = "target") -> dict[str, Tensor]:
    """Right-padded ``[input; sep; target; eos]`` rows with the LM batch keys (see CONTRIBUTING.md).

    ``loss_mask[:, i]`` is True where predicting token i+1 counts: from the separator (which predicts the first
    target token) to the token before the end, for ``loss_on="target"``; every real next token for ``"all"``.
    """
    rows = [list(x) + [sep_id] + list(y) + [eos_id] for x, y in zip(inputs, targets)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros(len(rows), length, dtype=torch.bool)
    loss = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, (row, x) in enumerate(zip(rows, inputs)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = True
        start = len(x) if loss_on == "target" else 0  # index of the separator
        loss[i, start : len(row) - 1] = True
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}
