"""Exact resume with dropout > 0 (ut/lit/callbacks/resumable_order.py): a run interrupted mid-epoch and resumed
from its checkpoint has, step for step, the same training losses as the uninterrupted run, for a loader with a
fixed batch_size and for one with a batch_sampler (WikiSum's length bucketing); validation runs in between."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from ut.data.algorithmic import AlgorithmicDataModule
from ut.data.wikisum import LengthBucketBatchSampler
from ut.lit import Seq2SeqModule
from ut.lit.callbacks import ResumableBatchSampler, ResumableDataOrder

CFG = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_encoder_layers": 1, "n_decoder_layers": 1, "dropout": 0.3}


class BucketedAlgorithmic(AlgorithmicDataModule):
    """The algorithmic data through a length-bucketing batch sampler (batch_size None on the DataLoader)."""

    def train_dataloader(self):
        lengths = [len(e.src) for e in self.train_set]
        return DataLoader(self.train_set, batch_sampler=LengthBucketBatchSampler(lengths, 8, seed=3, pool_batches=2),
                          collate_fn=self._train_collate)


class RecordLosses(L.Callback):
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


class StopAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def run(data_cls, ckpt_dir, max_steps, extra=(), ckpt_path=None):
    L.seed_everything(0)
    module = Seq2SeqModule("transformer", CFG, {"warmup_steps": 4})
    data = data_cls(task="copy", train_max_len=6, eval_max_len=6, train_size=40, val_size=4, test_size=4,
                    batch_size=8)
    rec = RecordLosses()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, every_n_train_steps=1)
    t = L.Trainer(max_steps=max_steps, val_check_interval=3, limit_val_batches=1, num_sanity_val_steps=1,
                  logger=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=[rec, ResumableDataOrder(seed=7), ckpt, *extra])
    t.fit(module, data, ckpt_path=ckpt_path)
    return t, rec


@pytest.mark.parametrize("data_cls", [AlgorithmicDataModule, BucketedAlgorithmic], ids=["batch_size", "batch_sampler"])
def test_resume_mid_epoch_with_dropout_equals_the_uninterrupted_run(tmp_path, data_cls):
    _, full = run(data_cls, tmp_path / "full", 12)
    t1, first = run(data_cls, tmp_path / "cut", 12, extra=[StopAt(7)])  # 5 batches an epoch: mid-epoch 2
    assert t1.global_step == 7
    t2, rest = run(data_cls, tmp_path / "resumed", 12, ckpt_path=str(tmp_path / "cut" / "last.ckpt"))
    assert t2.global_step == 12
    assert sorted(rest.losses) == list(range(8, 13))
    assert {**first.losses, **rest.losses} == full.losses  # bit-equal losses: same batches, same dropout masks


def test_without_the_rng_state_dropout_differs(tmp_path):
    """Control: the same resume without the stored RNG state gives other losses (the test above can fail)."""
    _, full = run(AlgorithmicDataModule, tmp_path / "full", 10)
    run(AlgorithmicDataModule, tmp_path / "cut", 10, extra=[StopAt(7)])
    ckpt = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=False)
    key = next(k for k in ckpt["callbacks"] if "ResumableDataOrder" in k)
    assert "rng" in ckpt["callbacks"][key]
    del ckpt["callbacks"][key]["rng"]
    torch.save(ckpt, tmp_path / "no_rng.ckpt")
    _, rest = run(AlgorithmicDataModule, tmp_path / "resumed", 10, ckpt_path=str(tmp_path / "no_rng.ckpt"))
    assert any(rest.losses[s] != full.losses[s] for s in rest.losses)


def test_batch_sampler_wrapper_sets_epoch_skips_and_shards():
    inner = LengthBucketBatchSampler(list(range(30)), 4, seed=1)
    wrapper = ResumableBatchSampler(inner)
    wrapper.set_epoch(2)
    epoch2 = list(wrapper)
    assert epoch2 == list(wrapper)  # a pure function of the epoch (the inner sampler's own counter is overridden)
    wrapper.skip_in_epoch(2, 3)
    assert list(wrapper) == epoch2[3:] and list(wrapper) == epoch2  # exact and one-shot
    wrapper.set_epoch(3)
    assert list(wrapper) != epoch2
    ranks = [list(ResumableBatchSampler(inner, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(inner) // 2
    assert not {tuple(b) for b in ranks[0]} & {tuple(b) for b in ranks[1]}


def test_batch_sampler_without_set_epoch_is_warned_about():
    with pytest.warns(UserWarning, match="has no set_epoch"):
        ResumableBatchSampler([[0, 1], [2, 3]])
