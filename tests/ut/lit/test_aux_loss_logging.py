"""The training modules log the two parts of ModelOutput.aux_loss apart: the MoE balancing loss as moe_loss, the
ACT ponder loss as ponder_loss (each only where the model has it)."""

from __future__ import annotations

import lightning as L
import pytest

from ut.lit import LanguageModelModule

TINY = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "max_len": 32, "block_size": 4, "n_experts": 2}


def fit_and_test(module, data):
    t = L.Trainer(max_steps=2, limit_val_batches=1, limit_test_batches=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=2)
    t.fit(module, data)
    return set(t.callback_metrics), set(t.test(module, data)[0])


@pytest.mark.parametrize("name,cfg,parts", [
    ("decoder_only", {"layer_pattern": "locm-moe"}, {"moe_loss"}),
    ("universal_decoder_only", {"layer_pattern": "locm-moe", "n_steps": 2}, {"moe_loss"}),
    ("universal_decoder_only", {"layer_pattern": "locm-moe", "n_steps": 2, "recurrence": "act"},
     {"moe_loss", "ponder_loss"}),
    ("universal_decoder_only", {"layer_pattern": "locm", "n_steps": 2, "recurrence": "act"}, {"ponder_loss"}),
])
def test_moe_and_ponder_losses_are_logged_apart(name, cfg, parts, tiny_lm_data):
    train_keys, test_keys = fit_and_test(LanguageModelModule(name, {**TINY, **cfg}), tiny_lm_data)
    for part in ("moe_loss", "ponder_loss"):
        assert (f"train/{part}" in train_keys) == (part in parts), (part, sorted(train_keys))
        assert (f"test/{part}" in test_keys) == (part in parts), (part, sorted(test_keys))
