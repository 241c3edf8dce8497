"""NonFiniteLossGuard (ut/lit/callbacks/nonfinite.py): a diverging run stops with the step and the loss, its
checkpoints keep finite weights; skip mode skips exactly the bad steps and counts them."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from tests.test_cli import REPO
from ut.cli import cli_main
from ut.lit.callbacks import NonFiniteLossError, NonFiniteLossGuard


def finite_state(path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return all(bool(v.isfinite().all()) for v in state.values() if v.is_floating_point())


def test_huge_learning_rate_stops_with_step_and_loss_and_keeps_finite_checkpoint(tmp_path):
    path = REPO / "experiments/ut_paper/configs/algorithmic_ut_act.yaml"
    d = "--data.init_args."
    args = ["fit", "--config", str(path), "--run.logger", "none", "--run.save_dir", str(tmp_path),
            "--trainer.max_steps", "6", "--run.checkpoint_every_n_steps", "1",
            "--model.init_args.optimizer.lr_scale", "1e30", "--trainer.callbacks+=ut.lit.callbacks.NonFiniteLossGuard",
            d + "train_max_len", "8", d + "eval_max_len", "12", d + "val_size", "4", d + "test_size", "4",
            d + "batch_size", "4", d + "eval_batch_size", "4"]
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf|-inf) at global step \d+"):
        cli_main(args)
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts and all(finite_state(p) for p in ckpts), ckpts  # last.ckpt of the last finite step


class PoisonedRegression(L.LightningModule):
    """y = w x on batches of ones; the loss of the batches listed in ``bad`` is NaN."""

    def __init__(self, bad=()):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.bad = set(bad)

    def training_step(self, batch, batch_idx):
        loss = (self.lin(batch) - 1.0).pow(2).mean()
        return loss * float("nan") if batch_idx in self.bad else loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(torch.ones(16, 4), batch_size=2)


class Snapshots(Callback):
    def __init__(self):
        self.after: list[torch.Tensor] = []  # weights after each batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append(torch.cat([p.detach().flatten().clone() for p in pl_module.parameters()]))


def tiny_trainer(tmp_path, callbacks, max_steps=6, **kw):
    return L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=str(tmp_path), callbacks=callbacks, **kw)


def test_stop_mode_raises_before_the_optimiser_step(tmp_path):
    snaps = Snapshots()
    t = tiny_trainer(tmp_path, [NonFiniteLossGuard(), snaps], enable_checkpointing=False)
    module = PoisonedRegression(bad={3})
    with pytest.raises(NonFiniteLossError, match="training loss is nan at global step 3"):
        t.fit(module)
    assert len(snaps.after) == 3
    now = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert torch.equal(now, snaps.after[-1])  # the bad step changed nothing


def test_skip_mode_skips_exactly_the_bad_steps_and_counts_them(tmp_path):
    snaps, guard = Snapshots(), NonFiniteLossGuard(mode="skip")
    t = tiny_trainer(tmp_path, [guard, snaps], enable_checkpointing=False)
    t.fit(PoisonedRegression(bad={2, 4}))
    assert t.global_step == 6 and guard.skipped == 2
    assert float(t.callback_metrics["train/nonfinite_skipped"]) == 2.0
    assert torch.equal(snaps.after[2], snaps.after[1]) and torch.equal(snaps.after[4], snaps.after[3])
    assert not torch.equal(snaps.after[3], snaps.after[2])  # good steps still train
    assert all(bool(s.isfinite().all()) for s in snaps.after)


def test_skip_mode_gives_up_after_consecutive_bad_steps(tmp_path):
    t = tiny_trainer(tmp_path, [NonFiniteLossGuard(mode="skip", max_consecutive_skips=3)], enable_checkpointing=False)
    with pytest.raises(NonFiniteLossError, match="3th non-finite step in a row"):
        t.fit(PoisonedRegression(bad=set(range(8))))


def test_a_non_finite_checkpoint_is_never_written_over_a_good_one(tmp_path):
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ck"), save_last=True, every_n_train_steps=1)
    module = PoisonedRegression()
    t = tiny_trainer(tmp_path, [NonFiniteLossGuard(), ckpt], max_steps=2)
    t.fit(module)
    last = tmp_path / "ck" / "last.ckpt"
    good = last.read_bytes()
    assert finite_state(last)
    with torch.no_grad():
        module.lin.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="refusing to save a checkpoint .* lin.weight"):
        t.save_checkpoint(last)
    assert last.read_bytes() == good


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        NonFiniteLossGuard(mode="ignore")
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        NonFiniteLossGuard(mode="skip", max_consecutive_skips=0)
