"""FactQAModule trains the fact-level bAbI models end to end; the attention / ponder map callbacks draw over facts."""

import lightning as L
import pytest

from ut.data.babi import BabiDataModule
from ut.lit.callbacks import AttentionMapCallback, PonderMapCallback
from ut.lit.fact_qa import FactQAModule

TINY = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0}
OPT = {"warmup_steps": 5, "peak_lr": 3e-3}


def trainer(callbacks=()):
    return L.Trainer(max_steps=3, limit_val_batches=1, limit_test_batches=None, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, val_check_interval=3, callbacks=list(callbacks))


@pytest.mark.parametrize("name,cfg", [("transformer_fact_qa", {**TINY, "n_layers": 1}),
                                      ("universal_fact_qa", {**TINY, "n_steps": 2, "recurrence": "act",
                                                             "act_max_steps": 3})])
def test_fit_test_per_task_metrics_and_maps(babi_dir, name, cfg, monkeypatch):
    drawn = []
    monkeypatch.setattr("ut.lit.callbacks.attention_maps.log_figure", lambda tr, key, fig: drawn.append(key))
    monkeypatch.setattr("ut.lit.callbacks.ponder_maps.log_figure", lambda tr, key, fig: drawn.append(key))
    data = BabiDataModule(data_dir=str(babi_dir), tasks=[1, 2], batch_size=8, eval_batch_size=16)
    module = FactQAModule(name, cfg, OPT)
    assert module.model is None  # sizes come from the data
    t = trainer([AttentionMapCallback(n_examples=2), PonderMapCallback(n_examples=2)])
    t.fit(module, data)
    res = t.test(module, data)[0]
    assert module.hparams.model_config["max_words"] == data.max_words
    assert module.hparams.model_config["n_classes"] == data.num_classes
    errs = [res["test/error_task1"], res["test/error_task2"]]
    assert res["test/mean_error"] == pytest.approx(sum(errs) / 2)
    assert sum(k.startswith("val/attention/encoder") for k in drawn) == 2
    if cfg.get("recurrence") == "act":
        assert res["test/ponder_task1"] >= 1 and "val/ponder_map/encoder" in drawn
        # the ponder time is per item [question, facts]: its mask is src_mask
        out = module.forward_batch(next(iter(data.val_dataloader())))
        assert out.ponder_time["encoder"].shape == next(iter(data.val_dataloader()))["src_mask"].shape


def test_flat_batches_are_refused_with_a_clear_error(babi_dir):
    data = BabiDataModule(data_dir=str(babi_dir), tasks=1, layout="flat")
    data.setup()
    module = FactQAModule("universal_fact_qa", {**TINY, "n_steps": 1, "vocab_size": 40, "n_classes": 8,
                                                 "max_words": 8})
    with pytest.raises(KeyError, match="layout='facts'"):
        module.forward_batch(next(iter(data.train_dataloader())))
    with pytest.raises(ValueError, match="trains"):
        FactQAModule("universal_classifier", TINY)
