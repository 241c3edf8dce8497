"""Training the fact-level bAbI models (``transformer_fact_qa``, ``universal_fact_qa``; Dehghani et al. 2019 §3.1).

The same losses and metrics as :class:`ut.lit.classification.ClassificationModule` (accuracy, per-task error,
failed tasks, per-task ponder time); only the batch differs: the fact layout of :mod:`ut.data.babi`
(``facts Long[B, F, W]``, ``fact_mask Bool[B, F]``, ``question Long[B, Wq]``, ``src_mask Bool[B, 1 + F]`` = the
encoder's items ``[question, facts]``, ``label``, ``task``). Because ``src_mask`` is the mask of the encoder's
items, the ponder statistics and the attention / ponder map callbacks (``ut.lit.callbacks``) work per FACT
unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ut.lit.base import model_config_keys
from ut.lit.classification import ClassificationModule
from ut.models.outputs import ModelOutput

FACT_KEYS = ("facts", "fact_mask", "question")


class FactQAModule(ClassificationModule):
    """bAbI QA over fact vectors. See :class:`ut.lit.base.TrainingModule` for the arguments."""

    DATA_FILLED_KEYS = {**ClassificationModule.DATA_FILLED_KEYS, "max_words": "max_words"}
    ACCEPTED_MODELS = ("transformer_fact_qa", "universal_fact_qa")

    def __init__(self, model_name: str = "universal_fact_qa",
                 model_config: FactQAModelConfig = {},  # noqa: B006 (copied in TrainingModule, never mutated)
                 optimizer: dict[str, Any] | None = None, label_smoothing: float = 0.1):
        super().__init__(model_name, model_config, optimizer, label_smoothing)

    def forward_batch(self, batch: dict[str, Tensor], need_weights: bool = False) -> ModelOutput:
        missing = [k for k in FACT_KEYS if k not in batch]
        if missing:
            raise KeyError(f"FactQAModule needs the bAbI fact layout (BabiDataModule(layout='facts')); the batch "
                           f"lacks {missing} (it has {sorted(batch)})")
        return self._require_model()(batch["facts"], batch["question"], batch["fact_mask"],
                                     need_weights=need_weights)


# the keys ``model_config`` may hold, checked by LightningCLI while parsing (ut.lit.base.model_config_keys)
FactQAModelConfig = model_config_keys("FactQAModelConfig", FactQAModule)
