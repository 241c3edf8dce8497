"""Resume an interrupted run EXACTLY: after the restart the run sees the batches and the dropout masks that the
uninterrupted run would have seen, so its losses and weights are the same.

Lightning restores the weights, optimiser, scheduler and step counters from a checkpoint, but a plain shuffled
DataLoader draws a fresh permutation and starts the epoch from its beginning (Lightning warns "resuming from a
checkpoint that ended before the epoch ended"), and the global RNG (dropout) starts from wherever the new process
left it. :class:`ResumableDataOrder` therefore

- rebuilds the training DataLoader (same dataset, collate function, workers) with an order that is a pure function
  of ``(seed, epoch)`` and can skip the batches of the current epoch that the checkpoint had already trained on
  (indices only: no data is loaded for them):

  * a loader with a fixed ``batch_size``: its sampler becomes :class:`ResumableShuffleSampler` (the
    DistributedSampler recipe, so it also shards across DDP ranks);
  * a loader with a ``batch_sampler`` (e.g. the length-bucketing :class:`ut.data.wikisum.LengthBucketBatchSampler`):
    it is wrapped in :class:`ResumableBatchSampler`, which calls the batch sampler's ``set_epoch(epoch)`` before
    each epoch (Lightning's epoch, also after a mid-epoch restart; a batch sampler without ``set_epoch`` is warned
    about: its order after a restart may differ) and shards its batches across ranks (under DDP set
    ``trainer.use_distributed_sampler: false``, as for any custom batch sampler);

- stores the global RNG states (torch, CUDA, numpy, Python; Lightning's ``_collect_rng_states``) in the checkpoint
  and restores them just before the first training batch after the restart;
- keeps evaluation during ``fit`` (sanity check, validation) from consuming the training RNG stream (the state is
  saved at validation start and put back at validation end), and gives the rebuilt training loader its own
  ``torch.Generator`` (a DataLoader iterator otherwise draws its base seed from the global RNG), so that the RNG
  stream of training steps is the same whether or not the run was interrupted.

Collate functions must not draw from the global RNG (they run one batch ahead, in Lightning's prefetch): data
randomness belongs to the examples, as in the algorithmic tasks' per-example offset draws. Deviation: under DDP the
checkpoint holds rank 0's RNG state, so only single-process resumes are bit-exact in their dropout masks (the data
order is exact on every rank). An IterableDataset is left alone with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, Sampler


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


class ResumableBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler: its epoch is set before each iteration, its batches are sharded across ranks (every
    rank gets the same number), and the first ``batches`` batches of one epoch can be skipped after a restart.

    The wrapped sampler must make its order a function of its ``set_epoch`` value (and its own seed), as
    :class:`ut.data.wikisum.LengthBucketBatchSampler` does.
    """

    def __init__(self, batch_sampler, num_replicas: int = 1, rank: int = 0):
        self.batch_sampler = batch_sampler
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches to skip)
        # Lightning calls set_epoch on ``loader.batch_sampler.sampler`` before every epoch, restarts included
        self.sampler = _EpochRelay(self)
        if not callable(getattr(batch_sampler, "set_epoch", None)):
            warnings.warn(f"ResumableDataOrder: the batch sampler {type(batch_sampler).__name__} has no "
                          "set_epoch(epoch); if it shuffles, its order after a restart differs from the "
                          "uninterrupted run's", stacklevel=2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_in_epoch(self, epoch: int, n_batches: int) -> None:
        """On the next iteration of ``epoch``, drop its first ``n_batches`` batches of this rank (once)."""
        self._skip = (epoch, n_batches)

    def _batches(self) -> list[list[int]]:
        if callable(getattr(self.batch_sampler, "set_epoch", None)):
            self.batch_sampler.set_epoch(self.epoch)
        batches = [list(b) for b in self.batch_sampler]
        if self.num_replicas > 1:
            batches = batches[:len(batches) // self.num_replicas * self.num_replicas][self.rank::self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: the epoch is read at the first batch, after Lightning's set_epoch (a restarted fit loop
        # creates the iterator before it sets the epoch)
        batches = self._batches()
        if self._skip is not None and self._skip[0] == self.epoch:
            batches = batches[self._skip[1]:]
        self._skip = None
        yield from batches

    def __len__(self) -> int:
        n = len(self.batch_sampler)
        return n // self.num_replicas if self.num_replicas > 1 else n


class _EpochRelay:
    """The ``sampler`` attribute of :class:`ResumableBatchSampler`: passes Lightning's ``set_epoch`` on to it."""

    def __init__(self, owner: ResumableBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class ResumableDataOrder(L.Callback):
    """Deterministic, exactly resumable training order and RNG stream (see the module docstring).

    Args:
        seed: seed of the per-epoch permutations and of the training loader's generator (the CLI passes
            ``seed_everything``).
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.sampler: ResumableShuffleSampler | ResumableBatchSampler | None = None
        self.batch_size: int | None = None  # None: a batch sampler decides the batches
        self._pending: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._train_rng: dict[str, Any] | None = None
        self._trainer_progress: dict[str, int] | None = None

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
        common = dict(collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, timeout=loader.timeout,
                      multiprocessing_context=loader.multiprocessing_context,
                      generator=torch.Generator().manual_seed(self.seed),
                      persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)
        if loader.num_workers > 0:
            common["prefetch_factor"] = loader.prefetch_factor
        if loader.batch_size is None:
            self.batch_size = None
            self.sampler = ResumableBatchSampler(loader.batch_sampler, num_replicas=trainer.world_size,
                                                 rank=trainer.global_rank)
            built = DataLoader(loader.dataset, batch_sampler=self.sampler, **common)
        else:
            self.batch_size = loader.batch_size
            self.sampler = ResumableShuffleSampler(loader.dataset, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, seed=self.seed,
                                                   drop_last=loader.drop_last)
            built = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=self.sampler,
                               drop_last=loader.drop_last, **common)
        if self._pending is not None:
            self._apply_pending()
        return built

    def _apply_pending(self) -> None:
        state, self._pending = self._pending, None
        if state["seed"] != self.seed:
            warnings.warn(f"ResumableDataOrder: the checkpoint was trained with seed {state['seed']}, this run "
                          f"uses {self.seed}: the data order after the restart differs", stacklevel=2)
        saved = state.get("batch_size")  # None without "batch_sampler": a checkpoint that does not record it
        if saved != self.batch_size and (saved is not None or "batch_sampler" in state):
            raise ValueError(f"cannot resume the data order: the checkpoint's batches were "
                             f"{_describe(state.get('batch_size'))}, this run's are {_describe(self.batch_size)}")
        per_batch = 1 if self.batch_size is None else self.batch_size
        self.sampler.skip_in_epoch(state["epoch"], state["batches_done"] * per_batch)

    def state_dict(self) -> dict[str, Any]:
        state = dict(self._trainer_progress or {}, seed=self.seed, batch_size=self.batch_size)
        if isinstance(self.sampler, ResumableBatchSampler):
            state["batch_sampler"] = type(self.sampler.batch_sampler).__name__
        if self._trainer_progress is not None:
            # the training stream's state, also when saved during validation (which runs on a forked stream)
            state["rng"] = self._train_rng if self._train_rng is not None else _rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = state_dict.get("rng")
        if "epoch" in state_dict:
            self._pending = dict(state_dict)
            if self.sampler is not None:
                self._apply_pending()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._train_rng = _rng_state()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._train_rng is not None:
            _set_rng_state(self._train_rng)
            self._train_rng = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # recorded after every batch (callbacks run before ModelCheckpoint), so that a checkpoint saved at this
        # batch's end says "batch_idx + 1 batches of this epoch are done" (Lightning's own restart rule)
        self._trainer_progress = {"epoch": trainer.current_epoch, "batches_done": batch_idx + 1}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._trainer_progress = {"epoch": trainer.current_epoch,
                                  "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.completed}


def _describe(batch_size: int | None) -> str:
    return "chosen by a batch sampler" if batch_size is None else f"of batch_size {batch_size}"


def _rng_state() -> dict[str, Any]:
    """Lightning's ``_collect_rng_states`` in types that ``torch.load(weights_only=True)`` accepts (tensors, lists,
    numbers), so that Lightning can load the checkpoint safely."""
    state = _collect_rng_states()
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        state["numpy"] = [name, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss)]
    version, py_state, gauss = state["python"]
    state["python"] = [version, list(py_state), gauss]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    state = dict(state)
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, gauss = state["numpy"]
        state["numpy"] = (name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss)
    if not torch.cuda.is_available() or not state.get("torch.cuda"):
        state.pop("torch.cuda", None)  # a CPU restart of a GPU run (or the reverse) keeps the CPU streams
    _set_rng_states(state)
