"""ACT ponder pictures (Graves 2016; Dehghani et al. 2019 Fig. 5): the ponder time n + r of every position of a few
fixed validation examples, and the histogram of the number of updates n over the whole validation set.

With t2t's halting-bias initialisation (+1, p ~ 0.73 at the start) many positions halt after ~2 steps; the
histogram shows whether a run is stuck there. Nothing is drawn for models without ACT (no ponder times). The
ponder map labels each position with its token (the DataModule's vocabulary or tokenizer) and colours it on one
scale shared by every example, with a colour bar (:func:`ut.lit.figures.ponder_map`).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from ut.lit.callbacks.attention_maps import first_examples, token_strings
from ut.lit.figures import histogram, ponder_map
from ut.lit.image_logging import log_figure

_STREAM_MASK = {"encoder": "src_mask", "decoder": "tgt_mask"}
_STREAM_IDS = {"encoder": "src", "decoder": "tgt_in"}


class PonderMapCallback(L.Callback):
    """Log ponder maps of fixed validation examples and n_updates histograms.

    Args:
        n_examples: how many validation examples to draw.
        every_n_epochs: log at the end of every n-th validation epoch.
        max_tokens: draw the first this many tokens of each example.
    """

    def __init__(self, n_examples: int = 4, every_n_epochs: int = 1, max_tokens: int = 64):
        if n_examples < 1 or every_n_epochs < 1 or max_tokens < 1:
            raise ValueError("n_examples, every_n_epochs and max_tokens must be >= 1")
        self.n_examples, self.every_n_epochs, self.max_tokens = n_examples, every_n_epochs, max_tokens
        self._batch = None

    @torch.no_grad()
    def draw(self, trainer, pl_module, tag: str = "val") -> int:
        n_logged = 0
        loaders = trainer.val_dataloaders
        if loaders is not None and self._batch is None:
            self._batch = first_examples(loaders[0] if isinstance(loaders, list | tuple) else loaders,
                                         self.n_examples)
        if self._batch is not None:
            batch = {k: v.to(pl_module.device) for k, v in self._batch.items()}
            was_training = pl_module.training
            pl_module.eval()
            try:
                out = pl_module.forward_batch(batch)
            finally:
                pl_module.train(was_training)
            for stream, pt in out.ponder_time.items():
                mask = batch.get(_STREAM_MASK.get(stream, ""), batch.get("attention_mask"))
                rows, tokens = [], []
                ids = batch.get(_STREAM_IDS.get(stream, ""), batch.get("input_ids"))
                for i in range(pt.shape[0]):
                    n = int(mask[i].sum()) if mask is not None and mask.shape == pt.shape else pt.shape[1]
                    n = min(n, self.max_tokens)
                    rows.append(pt[i, :n].float().cpu().numpy())
                    tok = token_strings(trainer.datamodule, ids[i, :n].tolist()) \
                        if ids is not None and ids.shape == pt.shape else None
                    tokens.append(tok or [""] * n)
                have_tokens = any(any(t) for t in tokens)
                fig = ponder_map(rows, f"{stream} ACT ponder time n + r per token, first {self.max_tokens} tokens "
                                 f"(training step {trainer.global_step})", tokens if have_tokens else None,
                                 max_tokens=self.max_tokens)
                log_figure(trainer, f"{tag}/ponder_map/{stream}", fig)
                n_logged += 1
        for name, counts in pl_module.last_eval_vectors.get(tag, {}).items():
            if name.startswith("n_updates_hist_"):
                stream = name[len("n_updates_hist_"):]
                fig = histogram(np.asarray(counts), f"{stream}: ACT updates per position ({tag})")
                log_figure(trainer, f"{tag}/ponder_hist/{stream}", fig)
                n_logged += 1
        return n_logged

    def on_validation_end(self, trainer, pl_module):
        # after the module's own epoch-end (which fills last_eval_vectors)
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.draw(trainer, pl_module)
