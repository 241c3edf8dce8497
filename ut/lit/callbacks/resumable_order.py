"""Resume an interrupted run with the SAME data order: the batches after the restart are the ones the
uninterrupted run would have seen.

Lightning restores the weights, optimiser, scheduler and step counters from a checkpoint, but a plain shuffled
DataLoader draws a fresh permutation and starts the epoch from its beginning (Lightning warns "resuming from a
checkpoint that ended before the epoch ended"). :class:`ResumableDataOrder` replaces the training DataLoader's
sampler with :class:`ResumableShuffleSampler`, whose permutation is a pure function of ``(seed, epoch)`` (the
DistributedSampler recipe, so it also shards across DDP ranks), and stores in the checkpoint how many batches of
the current epoch were completed; after a restart the sampler skips exactly those (indices only: no data is
loaded for them).

It works with any map-style DataModule (``train_dataloader()`` returning a DataLoader); an IterableDataset is
left alone with a warning. The data modules keep their plain DataLoaders: the callback rebuilds the loader with
the same dataset, batch size, collate function and workers.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset


class ResumableShuffleSampler(DistributedSampler):
    """DistributedSampler (permutation seeded by ``seed + epoch``, rank-sharded) that can skip the first
    ``batches`` batches of one epoch after a restart.

    Subclassing DistributedSampler keeps Lightning from replacing it under DDP.
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self._skip: tuple[int, int] | None = None  # (epoch, indices to skip)

    def skip_in_epoch(self, epoch: int, n_indices: int) -> None:
        """On the next iteration of ``epoch``, drop its first ``n_indices`` indices (once)."""
        self._skip = (epoch, n_indices)

    def __iter__(self):
        indices = list(super().__iter__())
        if self._skip is not None and self._skip[0] == self.epoch:
            indices = indices[self._skip[1]:]
        self._skip = None
        return iter(indices)


class ResumableDataOrder(L.Callback):
    """Deterministic, resumable training order (see the module docstring).

    Args:
        seed: seed of the per-epoch permutations (the CLI passes ``seed_everything``).
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.sampler: ResumableShuffleSampler | None = None
        self.batch_size: int | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "ResumableDataOrder"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None or getattr(dm, "_resumable_wrapped", False):
            return
        original = dm.train_dataloader

        def train_dataloader():
            return self._rebuild(original(), trainer)

        dm.train_dataloader = train_dataloader  # instance attribute: Lightning asks the DataModule for it
        dm._resumable_wrapped = True

    def _rebuild(self, loader: DataLoader, trainer: L.Trainer) -> DataLoader:
        if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
            warnings.warn("ResumableDataOrder: the training data is not a map-style DataLoader; its order is not "
                          "made resumable", stacklevel=2)
            return loader
        if loader.batch_size is None:
            raise ValueError("ResumableDataOrder needs a DataLoader with a fixed batch_size (no batch_sampler)")
        self.batch_size = loader.batch_size
        self.sampler = ResumableShuffleSampler(loader.dataset, num_replicas=trainer.world_size,
                                               rank=trainer.global_rank, seed=self.seed, drop_last=loader.drop_last)
        if self._pending is not None:
            self._apply_pending()
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=self.sampler,
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers, drop_last=loader.drop_last,
                          pin_memory=loader.pin_memory,
                          persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)

    def _apply_pending(self) -> None:
        state, self._pending = self._pending, None
        if state["seed"] != self.seed:
            warnings.warn(f"ResumableDataOrder: the checkpoint was trained with seed {state['seed']}, this run "
                          f"uses {self.seed}: the data order after the restart differs", stacklevel=2)
        if state["batch_size"] not in (None, self.batch_size):
            raise ValueError(f"cannot resume the data order: checkpoint batch_size {state['batch_size']} != "
                             f"{self.batch_size}")
        self.sampler.skip_in_epoch(state["epoch"], state["batches_done"] * self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        trainer_state = getattr(self, "_trainer_progress", None)
        return dict(trainer_state or {}, seed=self.seed, batch_size=self.batch_size)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict:
            self._pending = dict(state_dict)
            if self.sampler is not None:
                self._apply_pending()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # recorded after every batch (callbacks run before ModelCheckpoint), so that a checkpoint saved at this
        # batch's end says "batch_idx + 1 batches of this epoch are done" (Lightning's own restart rule)
        self._trainer_progress = {"epoch": trainer.current_epoch, "batches_done": batch_idx + 1}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._trainer_progress = {"epoch": trainer.current_epoch,
                                  "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.completed}
