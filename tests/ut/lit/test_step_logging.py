"""Training metrics are computed and logged only on the steps Lightning writes them (``logs_this_step``): the CSV
log is the same as when every step logs, the final step's values end in callback_metrics, and the other steps make
no ``self.log`` call, except the progress-bar loss on the steps where a progress bar refreshes."""

from __future__ import annotations

import csv

import lightning as L
import pytest
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from tests.ut.lit.test_modules import FAST_OPT, TINY_ACT, tiny_algorithmic
from ut.lit import Seq2SeqModule
from ut.lit.base import TrainingModule


def fit(tmp_path, name, every_step: bool, monkeypatch, calls: list | None = None, bar_refresh: int | None = None):
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
    bar = [] if bar_refresh is None else [TQDMProgressBar(refresh_rate=bar_refresh)]
    t = L.Trainer(max_steps=7, log_every_n_steps=3, limit_val_batches=0, logger=CSVLogger(tmp_path / name),
                  enable_checkpointing=False, enable_progress_bar=bool(bar), enable_model_summary=False, callbacks=bar)
    t.fit(module, tiny_algorithmic())
    if bar:
        assert "train/loss_step" in t.progress_bar_metrics
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
    assert not [key for step, key in calls if step == 0]  # a non-logging step, no progress bar: no log call


def test_the_progress_bar_loss_is_logged_where_a_bar_refreshes(tmp_path, monkeypatch):
    calls: list = []
    fit(tmp_path, "bar", False, monkeypatch, calls, bar_refresh=2)
    bar_steps = {step for step, key in calls if key == "train/loss_step"}
    assert bar_steps == {1, 3, 5} | {2, 5, 6}  # every 2nd batch (0-based 1, 3, 5) and the logging steps
    assert {step for step, key in calls if key == "train/loss"} == {2, 5, 6}


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
