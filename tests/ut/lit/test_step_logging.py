"""Training metrics are computed and logged only on the steps Lightning writes them (``logs_this_step``): the CSV
log is the same as when every step logs, the final step's values end in callback_metrics, and the other steps make
no ``self.log`` calls beyond the progress-bar loss."""

from __future__ import annotations

import csv

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from tests.ut.lit.test_modules import FAST_OPT, TINY_ACT, tiny_algorithmic
from ut.lit import Seq2SeqModule
from ut.lit.base import TrainingModule


def fit(tmp_path, name, every_step: bool, monkeypatch, calls: list | None = None):
    if every_step:
        monkeypatch.setattr(TrainingModule, "logs_this_step", lambda self: True)
    L.seed_everything(0)
    module = Seq2SeqModule("universal", TINY_ACT, FAST_OPT)
    if calls is not None:
        real = module.log
        def log(*a, **k):
            calls.append((module.global_step, a[0] if a else k["name"]))
            return real(*a, **k)

        monkeypatch.setattr(module, "log", log)
    t = L.Trainer(max_steps=7, log_every_n_steps=3, limit_val_batches=0, logger=CSVLogger(tmp_path / name),
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(module, tiny_algorithmic())
    with open(next((tmp_path / name).rglob("metrics.csv"))) as f:
        rows = [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    return rows, dict(t.callback_metrics)


def test_gated_logging_writes_the_same_log_and_ends_with_the_last_step(tmp_path, monkeypatch):
    calls: list = []
    gated, gated_final = fit(tmp_path, "gated", False, monkeypatch, calls)
    with monkeypatch.context() as m:
        every, every_final = fit(tmp_path, "every", True, m)
    assert [r["step"] for r in gated] == ["2", "5"] and gated == every  # the CSV rows are identical
    for k in ("train/loss", "train/token_acc", "train/lr", "train/ponder_loss"):
        assert float(gated_final[k]) == pytest.approx(float(every_final[k]))  # the final step's values
    logged_steps = {step for step, key in calls if key == "train/loss"}
    assert logged_steps == {2, 5, 6}  # log steps 3 and 6 (1-based) and the final step 7
    assert {key for step, key in calls if step == 0} == {"train/loss_step"}  # a non-logging step: the bar only


class StopAfter(L.Callback):
    """Stops training after optimiser step ``n`` (as ``max_time`` or early stopping would, in on_train_batch_end)."""

    def __init__(self, n: int):
        self.n = n

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.n:
            trainer.should_stop = True


def test_a_callback_stopping_after_a_non_logging_step_gets_that_steps_row(tmp_path, monkeypatch):
    def run(name, every_step):
        with monkeypatch.context() as m:
            if every_step:
                m.setattr(TrainingModule, "logs_this_step", lambda self: True)
            L.seed_everything(0)
            module = Seq2SeqModule("universal", TINY_ACT, FAST_OPT)
            t = L.Trainer(max_steps=20, log_every_n_steps=3, limit_val_batches=0, logger=CSVLogger(tmp_path / name),
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=[StopAfter(4)])
            t.fit(module, tiny_algorithmic())
        with open(next((tmp_path / name).rglob("metrics.csv"))) as f:
            return [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]

    gated, every = run("gated", False), run("every", True)
    assert [r["step"] for r in gated] == ["2", "3"]  # step 3 (0-based) is not a logging step: written on stopping
    assert gated == every  # with this step's values, not a copy of step 2's
