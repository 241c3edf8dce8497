"""The halting losses reach the training modules: PonderNet's task loss is sum_n p_n L(y_n) (checked by hand in
each module), its KL / the stick-breaking expected depth are logged apart from the MoE loss, and both recurrences
train, evaluate and parse through the CLI."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from tests.ut.helpers import copy_batch, padded
from tests.ut.lit.test_model_config_parsing import config_with, parse
from ut.data.babi import BabiDataModule
from ut.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule
from ut.lit.fact_qa import FactQAModule
from ut.lit.losses import expected_smoothed_cross_entropy, smoothed_cross_entropy

TINY = {"d_model": 16, "n_heads": 2, "d_ff": 16, "dropout": 0.0, "n_steps": 2, "act_max_steps": 3}
PONDER = {**TINY, "recurrence": "pondernet"}
EPS = 0.1


def by_hand(step_logits, step_weights, target, mask):
    """sum_n p_n CE_eps(y_n) at every counted position, mean over them: one step at a time."""
    total = torch.zeros(target.shape, dtype=torch.float64)
    for n in range(step_logits.shape[0]):
        ce = F.cross_entropy(step_logits[n].double().flatten(0, -2), target.flatten(), reduction="none",
                             label_smoothing=EPS).view(target.shape)
        total = total + step_weights[n].double() * ce
    return (total * mask).sum() / mask.sum()


def test_seq2seq_task_loss_is_the_expectation_over_the_halting_step():
    m = Seq2SeqModule("universal", {**PONDER, "src_vocab_size": 12, "tgt_vocab_size": 12, "max_len": 16},
                      label_smoothing=EPS)
    b = copy_batch(batch=3, length=4, vocab=12)
    b["tgt_mask"] = torch.ones_like(b["tgt_out"], dtype=torch.bool)
    b["tgt_mask"][1, 3:] = False
    m.train()
    out = m.forward_batch(b)
    task, _ = m.task_loss(b, out)
    assert out.step_logits.shape[:3] == (3, 3, 5)
    expected = by_hand(out.step_logits, out.step_weights, b["tgt_out"], b["tgt_mask"])
    assert task.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = smoothed_cross_entropy(out.logits, b["tgt_out"], b["tgt_mask"], EPS).loss
    assert abs(plain.item() - expected.item()) > 1e-3  # the last step's loss alone is not the expectation
    m.eval()
    out = m.forward_batch(b)  # evaluation: the halted prediction, no expectation
    assert out.step_logits is None and out.ponder_loss is not None


def test_language_model_task_loss_is_the_expectation_over_the_shifted_targets():
    m = LanguageModelModule("universal_decoder_only", {**PONDER, "vocab_size": 12, "layer_pattern": "locm",
                                                       "block_size": 4, "max_len": 32}, label_smoothing=EPS)
    ids, mask = padded([[5, 6, 3, 7, 8, 2], [9, 3, 10, 2]])
    loss_mask = torch.zeros_like(mask)
    loss_mask[0, 2:5] = loss_mask[1, 1:3] = True
    b = {"input_ids": ids, "attention_mask": mask, "loss_mask": loss_mask}
    m.train()
    out = m.forward_batch(b)
    task, _ = m.task_loss(b, out)
    expected = by_hand(out.step_logits[:, :, :-1], out.step_weights[:, :, :-1], ids[:, 1:], loss_mask[:, :-1])
    assert task.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_classifier_task_loss_is_the_expectation_over_the_per_example_halting():
    m = ClassificationModule("universal_classifier", {**PONDER, "vocab_size": 12, "n_classes": 5},
                             label_smoothing=EPS)
    src, src_mask = padded([[5, 6, 7], [8, 9], [10, 11, 5]])
    b = {"src": src, "src_mask": src_mask, "label": torch.tensor([1, 4, 0])}
    m.train()
    out = m.forward_batch(b)
    assert out.step_logits.shape == (3, 3, 5) and out.step_weights.shape == (3, 3)
    task, _ = m.task_loss(b, out)
    expected = by_hand(out.step_logits, out.step_weights, b["label"], torch.ones(3, dtype=torch.bool))
    assert task.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    m._total_loss(task, out).backward()
    assert m.model.encoder.pondernet.halting.weight.grad.abs().sum() > 0


def test_expected_loss_with_a_point_mass_is_that_steps_loss_and_shapes_are_checked():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 2, 4, 6), torch.randint(0, 6, (2, 4))
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    weights = torch.zeros(3, 2, 4)
    weights[1] = 1.0
    got = expected_smoothed_cross_entropy(logits, weights, target, mask, EPS)
    ref = smoothed_cross_entropy(logits[1], target, mask, EPS)
    torch.testing.assert_close(got.loss, ref.loss)
    torch.testing.assert_close(got.nll, ref.nll)
    with pytest.raises(ValueError, match="step_weights"):
        expected_smoothed_cross_entropy(logits, weights[:, :, :3], target, mask)


def fit_and_test(module, data, steps=2):
    t = L.Trainer(max_steps=steps, limit_val_batches=1, limit_test_batches=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0, val_check_interval=steps)
    t.fit(module, data)
    return dict(t.callback_metrics), t.test(module, data)[0]


@pytest.mark.parametrize("recurrence,regularizer", [("pondernet", "decoder_kl"),
                                                    ("stick_breaking", "decoder_expected_depth")])
def test_lm_fits_and_logs_the_halting_regularizer_apart(recurrence, regularizer, tiny_lm_data):
    cfg = {**TINY, "recurrence": recurrence, "layer_pattern": "locm-moe", "block_size": 4, "n_experts": 2,
           "max_len": 32}
    train, test = fit_and_test(LanguageModelModule("universal_decoder_only", cfg), tiny_lm_data)
    for key in ("ponder_loss", "moe_loss", regularizer):
        assert f"train/{key}" in train and f"test/{key}" in test, key
    assert 1 <= test["test/n_updates_decoder"] <= 3 and test["test/ponder_decoder"] >= 1


def test_fact_qa_fits_under_pondernet(babi_dir):
    data = BabiDataModule(data_dir=str(babi_dir), tasks=[1, 2], batch_size=8, eval_batch_size=16)
    train, test = fit_and_test(FactQAModule("universal_fact_qa", PONDER), data)
    assert "train/encoder_kl" in train and "test/encoder_kl" in test and test["test/ponder_task1"] >= 1


@pytest.mark.parametrize("recurrence", ["pondernet", "stick_breaking"])
def test_the_cli_parses_the_new_recurrences(tmp_path, capsys, recurrence):
    path = config_with(tmp_path, recurrence=recurrence, pondernet_threshold=0.7, stick_breaking_threshold=0.95)
    code, text = parse(["--config", path, "--print_config"], capsys)
    assert code == 0 and f"recurrence: {recurrence}" in text
