"""Checkpoint + resume: the restarted run sees the same batches at the same steps and ends with the same weights
as the uninterrupted run (dropout 0, so the only randomness is the data order)."""

from __future__ import annotations

import hashlib

import lightning as L
import torch

from ut.data.algorithmic import AlgorithmicDataModule
from ut.lit import Seq2SeqModule
from ut.lit.callbacks import ResumableDataOrder, ResumableShuffleSampler

CFG = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_encoder_layers": 1, "n_decoder_layers": 1, "dropout": 0.0}


class RecordBatches(L.Callback):
    def __init__(self):
        self.seen: dict[int, str] = {}  # global step -> hash of the batch trained on

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen[trainer.global_step] = hashlib.sha1(batch["src"].numpy().tobytes()).hexdigest()[:12]


class StopAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True  # an "interrupted" run


def data():
    # 40 examples / batch 8 = 5 batches per epoch: 12 steps cross two epoch boundaries
    return AlgorithmicDataModule(task="copy", train_max_len=5, eval_max_len=6, train_size=40, val_size=4,
                                 test_size=4, batch_size=8)


def run(tmp_path, max_steps, extra=(), ckpt_path=None, ckpt_every=None):
    torch.manual_seed(0)
    module = Seq2SeqModule("transformer", CFG, {"warmup_steps": 4})
    rec = RecordBatches()
    callbacks = [rec, ResumableDataOrder(seed=7), *extra]
    if ckpt_every:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True,
                                                             every_n_train_steps=ckpt_every))
    t = L.Trainer(max_steps=max_steps, limit_val_batches=0, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=bool(ckpt_every), callbacks=callbacks)
    t.fit(module, data(), ckpt_path=ckpt_path)
    return t, module, rec


def test_resume_mid_epoch_same_order_steps_and_weights(tmp_path):
    _, full, rec_full = run(tmp_path / "a", 12)
    t1, _, rec1 = run(tmp_path / "b", 12, extra=[StopAt(7)], ckpt_every=1)  # stops mid-epoch 2 (step 7 of 5+5)
    assert t1.global_step == 7
    t2, resumed, rec2 = run(tmp_path / "c", 12, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    assert t2.global_step == 12
    assert sorted(rec2.seen) == list(range(7, 12))  # the step counter continues
    assert {**rec1.seen, **rec2.seen} == rec_full.seen  # the same batch at every step
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_order_differs_without_the_resumable_state(tmp_path):
    """Control: a restart that forgets the position in the epoch replays the epoch's first batches."""
    _, _, rec_full = run(tmp_path / "a", 8)
    sampler = ResumableShuffleSampler(list(range(40)), seed=7)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.skip_in_epoch(1, 16)
    assert list(sampler) == first[16:]  # skipping is exact and one-shot
    assert list(sampler) == first
    assert len(set(rec_full.seen.values())) == 8  # epochs are reshuffled: no batch repeats


def test_sampler_shards_across_ranks():
    parts = [list(ResumableShuffleSampler(list(range(10)), num_replicas=2, rank=r, seed=1)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(10)) and len(parts[0]) == len(parts[1]) == 5
