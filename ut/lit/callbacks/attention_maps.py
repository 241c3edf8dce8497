"""Attention maps of a few FIXED validation examples, per layer and head (Vaswani et al. 2017, Figs. 3-5), and for
the Universal Transformer per executed recurrent step (Dehghani et al. 2019, Appendix visualisations).

At the end of every ``every_n_epochs``-th validation epoch the module's ``forward_batch(batch, need_weights=True)``
runs on the first ``n_examples`` validation examples (taken once, so every picture shows the same inputs) and one
figure per (example, attention stream) is logged: rows are layers (Transformer) or steps (UT), columns heads,
cropped to the first ``max_tokens`` real tokens, which label the axes (from the DataModule's vocabulary or
tokenizer); every panel shares one colour scale and colour bar (:func:`ut.lit.figures.attention_grid`). With
``average_heads`` each row is the mean over heads instead, and the column title says so. Streams: ``encoder``,
``decoder_self``, ``decoder_cross`` (whatever the model returns in ``ModelOutput.attentions``).
"""

from __future__ import annotations

import lightning as L
import torch

from ut.lit.figures import attention_grid
from ut.lit.image_logging import log_figure

# stream -> (query mask key, key mask key) for each batch format
_MASKS = {
    "encoder": ("src_mask", "src_mask"),
    "decoder_self": ("tgt_mask", "tgt_mask"),
    "decoder_cross": ("tgt_mask", "src_mask"),
}
_LM_MASKS = {"decoder_self": ("attention_mask", "attention_mask")}
# stream -> (query ids key, key ids key): the tokens that label the axes
_IDS = {"encoder": ("src", "src"), "decoder_self": ("tgt_in", "tgt_in"), "decoder_cross": ("tgt_in", "src")}
_LM_IDS = {"decoder_self": ("input_ids", "input_ids")}


def token_strings(datamodule, ids) -> list[str] | None:
    """Token strings of ``ids`` from the DataModule's ``vocab`` (bAbI, algorithmic, LAMBADA) or ``tokenizer``
    (WikiSum's HF tokenizer); None when it has neither."""
    for owner in ("vocab", "tokenizer"):
        try:
            getter = getattr(getattr(datamodule, owner, None), "id_to_token", None)
        except (FileNotFoundError, OSError):  # a WikiSum module without a build
            getter = None
        if getter is not None:
            return [str(getter(int(i))) for i in ids]
    return None


def first_examples(loader, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` examples of a loader as one batch (the same ones every call for an unshuffled loader)."""
    parts, have = [], 0
    for batch in loader:
        parts.append(batch)
        have += next(iter(batch.values())).shape[0]
        if have >= n:
            break
    if not parts:
        raise ValueError("the validation loader is empty")
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        if vals[0].dim() >= 2:  # pad to the longest, then cut
            width = max(v.shape[1] for v in vals)
            vals = [torch.nn.functional.pad(v, (0, width - v.shape[1])) for v in vals]
        out[k] = torch.cat(vals)[:n]
    return out


class AttentionMapCallback(L.Callback):
    """Log attention maps of fixed validation examples.

    Args:
        n_examples: how many validation examples to show.
        every_n_epochs: log at the end of every n-th validation epoch (and after test).
        max_tokens: crop sequences to their first this many tokens (readable labels, file size).
        streams: which attention streams to draw (None: all that the model returns).
        average_heads: draw the mean over heads (one column) instead of one column per head.
        scale: colour scale, "auto" (log when most weights are near zero), "linear" or "log".
    """

    def __init__(self, n_examples: int = 2, every_n_epochs: int = 1, max_tokens: int = 48,
                 streams: list[str] | None = None, average_heads: bool = False, scale: str = "auto"):
        if n_examples < 1 or every_n_epochs < 1 or max_tokens < 1:
            raise ValueError("n_examples, every_n_epochs and max_tokens must be >= 1")
        self.n_examples, self.every_n_epochs, self.max_tokens = n_examples, every_n_epochs, max_tokens
        self.streams, self.average_heads, self.scale = streams, average_heads, scale
        self._batch: dict[str, torch.Tensor] | None = None

    def _fixed_batch(self, trainer) -> dict[str, torch.Tensor] | None:
        if self._batch is None:
            loaders = trainer.val_dataloaders
            if loaders is None:
                return None
            loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
            self._batch = first_examples(loader, self.n_examples)
        return self._batch

    @torch.no_grad()
    def draw(self, trainer, pl_module, tag: str = "val") -> int:
        """Draw and log the figures now; returns how many were logged."""
        batch = self._fixed_batch(trainer)
        if batch is None:
            return 0
        batch = {k: v.to(pl_module.device) for k, v in batch.items()}
        was_training = pl_module.training
        pl_module.eval()
        try:
            out = pl_module.forward_batch(batch, need_weights=True)
        finally:
            pl_module.train(was_training)
        masks, id_keys = (_LM_MASKS, _LM_IDS) if "input_ids" in batch else (_MASKS, _IDS)
        row_label = "step" if "universal" in pl_module.hparams.model_name else "layer"
        datamodule = getattr(trainer, "datamodule", None)
        n_logged = 0
        for stream, per_layer in out.attentions.items():
            if not per_layer or (self.streams is not None and stream not in self.streams):
                continue
            q_key, k_key = masks.get(stream, (None, None))
            for i in range(min(self.n_examples, per_layer[0].shape[0])):
                nq = int(batch[q_key][i].sum()) if q_key in batch else per_layer[0].shape[2]
                nk = int(batch[k_key][i].sum()) if k_key in batch else per_layer[0].shape[3]
                lq, lk = min(nq, self.max_tokens), min(nk, self.max_tokens)
                maps = [w[i, :, :lq, :lk].float().cpu().numpy() for w in per_layer]
                n_heads = maps[0].shape[0]
                if self.average_heads:
                    maps = [m.mean(0, keepdims=True) for m in maps]
                qi, ki = id_keys.get(stream, (None, None))
                q_tok = token_strings(datamodule, batch[qi][i, :lq].tolist()) if qi in batch else None
                k_tok = token_strings(datamodule, batch[ki][i, :lk].tolist()) if ki in batch else None
                row_names = None
                width = batch[ki].shape[1] if ki in batch else None
                compressed = [width is not None and w.shape[-1] != width for w in per_layer]
                if any(compressed):  # memory-compressed keys (Liu et al. 2018 §4.2.2): key j is a block of tokens
                    k_tok = [[f"c{j}" for j in range(m.shape[2])] if c else k_tok for m, c in zip(maps, compressed)]
                    row_names = [f"{row_label} {r}" + (" (compressed keys)" if c else "")
                                 for r, c in enumerate(compressed)]
                heads = f"mean of {n_heads} heads" if self.average_heads else f"{n_heads} heads"
                fig = attention_grid(
                    maps, f"{stream} attention, example {i}, {len(maps)} {row_label}s x {heads}; first {lq} of {nq} "
                    f"query and {lk} of {nk} key tokens (training step {trainer.global_step})", row_label, q_tok,
                    k_tok,
                    scale=self.scale, head_names=[f"mean of {n_heads} heads"] if self.average_heads else None,
                    row_names=row_names)
                log_figure(trainer, f"{tag}/attention/{stream}/example{i}", fig)
                n_logged += 1
        return n_logged

    def on_validation_end(self, trainer, pl_module):
        # after the module's own epoch-end (which fills last_eval_vectors)
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.draw(trainer, pl_module)
