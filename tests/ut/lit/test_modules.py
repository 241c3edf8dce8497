"""The three training modules run end to end on tiny data, log the metrics they promise, and compute them exactly."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ut.data.algorithmic import AlgorithmicDataModule
from ut.data.babi import BabiDataModule
from ut.eval.metrics import sequence_accuracy, token_accuracy
from ut.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule
from ut.models.outputs import ModelOutput

TINY = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0}
TINY_UT = {**TINY, "n_steps": 2}
TINY_ACT = {**TINY_UT, "recurrence": "act", "act_max_steps": 3}
FAST_OPT = {"warmup_steps": 5, "lr_scale": 2.0}


def tiny_algorithmic(**kw):
    args = dict(task="copy", train_max_len=6, eval_max_len=8, train_size=64, val_size=8, test_size=8, batch_size=8,
                eval_batch_size=4)
    args.update(kw)
    return AlgorithmicDataModule(**args)


def trainer(**kw):
    args = dict(max_steps=3, limit_val_batches=1, limit_test_batches=2, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=3)
    args.update(kw)
    return L.Trainer(**args)


@pytest.mark.parametrize("name,cfg", [("transformer", {**TINY, "n_encoder_layers": 1, "n_decoder_layers": 1}),
                                      ("universal", TINY_UT), ("universal", TINY_ACT)])
def test_seq2seq_fit_and_test(name, cfg):
    module = Seq2SeqModule(name, cfg, FAST_OPT)
    assert module.model is None  # vocabulary sizes come from the data
    data = tiny_algorithmic()
    t = trainer()
    t.fit(module, data)
    for k in ("train/loss", "train/token_acc", "train/lr", "val/seq_acc"):
        assert k in t.callback_metrics
    assert module.hparams.model_config["src_vocab_size"] == data.vocab_size == module.model.cfg.tgt_vocab_size
    assert module.model.cfg.max_len == data.max_positions
    res = t.test(module, data)[0]
    for key in ("test/loss", "test/nll", "test/ppl", "test/token_acc", "test/seq_acc"):
        assert key in res
    assert 0 <= res["test/token_acc"] <= 1 and res["test/ppl"] == pytest.approx(math.exp(res["test/nll"]),
                                                                                 rel=1e-4)
    if cfg.get("recurrence") == "act":
        assert "test/ponder_loss" in res and 1 <= res["test/ponder_encoder"] <= 3 + 1
        assert 1 <= res["test/n_updates_decoder"] <= 3
        hist = module.last_eval_vectors["test"]["n_updates_hist_encoder"]
        assert hist[0] == 0 and hist.sum() > 0  # every real position runs at least one step


def test_seq2seq_greedy_decoding_metrics():
    module = Seq2SeqModule("transformer", {**TINY, "n_encoder_layers": 1, "n_decoder_layers": 1}, FAST_OPT,
                           decode_on_test=True)
    t = trainer(max_steps=1)
    t.fit(module, tiny_algorithmic())
    res = t.test(module, tiny_algorithmic())[0]
    assert 0 <= res["test/decoded_token_acc"] <= 1 and 0 <= res["test/decoded_seq_acc"] <= 1


def test_ponder_loss_is_added_to_the_task_loss():
    data = tiny_algorithmic()
    data.setup("fit")
    module = Seq2SeqModule("universal", {**TINY_ACT, "src_vocab_size": data.vocab_size,
                                         "tgt_vocab_size": data.vocab_size, "max_len": data.max_positions})
    batch = next(iter(data.train_dataloader()))
    out = module.forward_batch(batch)
    task, _ = module.task_loss(batch, out)
    assert out.aux_loss is not None and out.aux_loss.requires_grad
    assert module._total_loss(task, out).item() == pytest.approx(task.loss.item() + out.aux_loss.item())


def test_epoch_metrics_are_exact_over_uneven_batches():
    """Epoch accuracies equal ut.eval.metrics on the concatenated set (not a mean of batch ratios)."""
    module = Seq2SeqModule("transformer", {**TINY, "src_vocab_size": 9, "tgt_vocab_size": 9,
                                           "n_encoder_layers": 1, "n_decoder_layers": 1})
    g = torch.Generator().manual_seed(0)
    batches, all_logits, all_tgt, all_mask = [], [], [], []
    for b in (5, 2):  # uneven batches
        tgt = torch.randint(5, 9, (b, 6), generator=g)
        mask = torch.ones(b, 6, dtype=torch.bool)
        mask[0, 3:] = False
        logits = F.one_hot(tgt, 9).float() * 5
        logits[:, 1, :] = torch.randn(b, 9, generator=g)  # some mistakes
        batches.append(({"tgt_out": tgt, "tgt_mask": mask}, logits))
        all_logits.append(logits), all_tgt.append(tgt), all_mask.append(mask)
    module.forward_batch = lambda batch, need_weights=False: ModelOutput(batch["_logits"])
    for batch, logits in batches:
        module._eval_step("val", {**batch, "_logits": logits})
    module._eval_epoch_end("val")
    m = module.last_eval_metrics["val"]
    logits, tgt, mask = torch.cat(all_logits), torch.cat(all_tgt), torch.cat(all_mask)
    assert m["token_acc"] == pytest.approx(token_accuracy(logits, tgt, mask).item())
    assert m["seq_acc"] == pytest.approx(sequence_accuracy(logits, tgt, mask).item())
    nll = F.cross_entropy(logits[mask], tgt[mask])
    assert m["nll"] == pytest.approx(nll.item(), rel=1e-5)


@pytest.mark.parametrize("name,cfg", [("transformer_classifier", {**TINY, "n_layers": 1}),
                                      ("universal_classifier", TINY_ACT)])
def test_classification_babi_per_task_errors(babi_dir, name, cfg):
    data = BabiDataModule(data_dir=str(babi_dir), tasks=[1, 2], batch_size=8, eval_batch_size=16, layout="flat")
    module = ClassificationModule(name, cfg, FAST_OPT)
    t = trainer(limit_test_batches=None)
    t.fit(module, data)
    res = t.test(module, data)[0]
    assert module.hparams.model_config["n_classes"] == data.num_classes
    errs = [res["test/error_task1"], res["test/error_task2"]]
    assert res["test/mean_error"] == pytest.approx(sum(errs) / 2)
    assert res["test/failed_tasks"] == sum(e > 0.05 for e in errs)
    if name == "universal_classifier":
        assert res["test/ponder_task1"] >= 1


def test_language_model_fit_and_last_word_accuracy(tiny_lm_data):
    module = LanguageModelModule("decoder_only", {**TINY, "n_layers": 1, "max_len": 32}, FAST_OPT)
    t = trainer()
    t.fit(module, tiny_lm_data)
    res = t.test(module, tiny_lm_data)[0]
    assert {"test/seq_acc", "test/ppl", "test/token_acc"} <= set(res)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="unknown model"):
        Seq2SeqModule("no_such_model", {})
    with pytest.raises(ValueError, match="trains"):
        Seq2SeqModule("decoder_only", {})
    with pytest.raises(ValueError, match="unknown model_config keys"):
        Seq2SeqModule("transformer", {"d_modle": 8})
    module = ClassificationModule("transformer_classifier", {**TINY, "n_layers": 1})
    with pytest.raises(ValueError, match="vocab_size is not set"):
        module.fill_from_data(object())


def test_checkpoint_rebuilds_without_data(tmp_path):
    module = Seq2SeqModule("universal", TINY_UT, FAST_OPT)
    t = trainer(max_steps=1, enable_checkpointing=True, default_root_dir=str(tmp_path))
    t.fit(module, tiny_algorithmic())
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    loaded = Seq2SeqModule.load_from_checkpoint(path)
    for a, b in zip(module.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
