"""Rows: the small-model regime of the committed UT-paper and bAbI configs (``experiments/ut_paper/configs``,
d 64-128), where per-step overhead rather than matmuls may decide.

- ``peer_step_row``: one training step (forward + backward + Adam, a fixed batch of the config's real shape) of ours
  against the peers at the config's dims, interleaved in one process: ``transformer`` configs: ours vs
  x-transformers vs ``torch.nn.Transformer``; ``universal`` configs: our UT (fixed T steps) vs x-transformers'
  tied layers (ACT configs add our UT with ACT, for scale only: it runs up to ``act_max_steps``, so it is not
  compared); ``decoder_only``: ours vs x-transformers. Encoder classifiers (bAbI) have no peer built here (none of
  the peers ships a pooled-classifier head at equal dims): their row is the Lightning overhead below only.
  Every row also times ``shared output layer + loss`` on the same batch: the tied embedding lookup, the output
  projection to the vocabulary, the cross-entropy and Adam on the embedding matrix, as every peer computes it
  (logits, then ``F.cross_entropy``), and ``ours' output layer + loss``, the same part as ours trains it (at
  vocabularies of 1024 and more the projection and the loss fused, :mod:`ut.lit.linear_cross_entropy`; below,
  the peers' path). ``ratios_without_shared`` are the ratios of what is left, (peer - shared) / (ours - ours'
  part): how much faster ours is on the layers, where the implementations differ (at LAMBADA's 10k-word
  vocabulary the output layer and loss are most of a d 128 step).
- ``lightning_overhead_row``: the config's own LightningModule and DataModule (real data pipeline, real loss,
  label smoothing, LR schedule, gradient clipping, ``log_every_n_steps``) trained by ``lightning.Trainer`` against
  a bare PyTorch loop over the SAME module (``forward_batch`` -> ``task_loss`` -> backward -> clip -> Adam ->
  scheduler) on the same DataLoader, and against the step alone on one fixed batch (no loader). Time per
  iteration = the interval between consecutive iteration ends (data fetch, step, logging: everything a loop does),
  median over the timed steps; chunks alternate (Lightning, bare, fixed, Lightning, ...) so that load hits all.
  ``framework share`` = (Lightning - bare) / Lightning: how much of a Lightning step is the framework;
  ``data share`` = (bare - fixed) / Lightning: the loader and batch construction.
- ``profile_lightning``: cProfile of a short Lightning run; the functions with the most own time, torch's C
  functions included, so that the overhead's sources can be read off.

Deviations from a real run, each to keep the measurement about the step: no validation, no checkpoints, no
callbacks (attention maps, tables), a CSV logger in a temporary folder instead of W&B offline (``logger="none"``
turns logging off), and a smaller ``train_size`` for the generated algorithmic data (shorter epochs, same batches).

    python -m benchmarks.small_models --out /tmp/small.json          # every config, a few minutes unloaded
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import json
import logging
import pstats
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.peers import (
    Seq2SeqContender,
    Seq2SeqDims,
    build_ours,
    build_torch_transformer,
    make_batch,
    missing_package,
)
from benchmarks.peers import training_step_fn as peer_step_fn
from benchmarks.timing import time_interleaved
from benchmarks.universal_speed import build_universal
from benchmarks.xtransformers_peers import (
    XT,
    XT_TIED,
    DecoderOnlyDims,
    build_ours_decoder_only,
    build_xtransformer_decoder_only,
    build_xtransformer_seq2seq,
    lm_loss,
    make_lm_batch,
    parameter_report,
)
from ut.lit.linear_cross_entropy import FUSED_OUTPUT_LOSS_MIN_VOCAB, linear_cross_entropy

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "ut_paper" / "configs"
SMALL_CONFIGS = ("algorithmic_transformer", "algorithmic_ut", "algorithmic_ut_act", "babi_1k_transformer",
                 "babi_1k_ut", "lambada_decoder_only")
SHARED = "shared output layer + loss"  # the part of a step every peer runs identically
OURS_SHARED = "ours' output layer + loss"  # the same part as ours computes it (fused at large vocabularies)
SMALL_TRAIN_SIZE = 4096  # generated algorithmic examples per epoch here (configs: 100000; same batches)


def load_config(name: str) -> dict:
    import yaml

    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config (known: {sorted(p.stem for p in CONFIGS.glob('*.yaml'))})")
    return yaml.safe_load(path.read_text())


def _instantiate(spec: dict, overrides: dict | None = None):
    module, _, cls = spec["class_path"].rpartition(".")
    args = {**spec.get("init_args", {}), **(overrides or {})}
    return getattr(importlib.import_module(module), cls)(**args)


def build_module_and_data(cfg: dict):
    """The config's LightningModule (model built from the data's sizes) and its set-up DataModule."""
    data_args = cfg["data"].get("init_args", {})
    overrides = {"train_size": min(data_args["train_size"], SMALL_TRAIN_SIZE)} if "train_size" in data_args else {}
    datamodule = _instantiate(cfg["data"], overrides)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = _instantiate(cfg["model"])
    module.fill_from_data(datamodule)
    module.configure_model()
    return module, datamodule


def config_dims(cfg: dict, model, batch: dict) -> Seq2SeqDims | DecoderOnlyDims | None:
    """Peer dims of a config: its model's widths, depth and vocabulary, and the batch's real shape; None for a
    model kind without peers."""
    init = cfg["model"]["init_args"]
    m, name = init["model_config"], init["model_name"]
    common = dict(d_model=m["d_model"], n_heads=m["n_heads"], d_ff=m["d_ff"], dropout=m.get("dropout", 0.1))
    if name in ("transformer", "universal"):
        depth = m.get("n_encoder_layers", m.get("n_steps"))
        return Seq2SeqDims(**common, n_encoder_layers=depth, n_decoder_layers=m.get("n_decoder_layers", depth),
                           vocab_size=model.cfg.src_vocab_size, batch_size=batch["src"].shape[0],
                           src_len=batch["src"].shape[1], tgt_len=batch["tgt_in"].shape[1])
    if name == "decoder_only":
        return DecoderOnlyDims(**common, n_layers=m["n_layers"], vocab_size=model.cfg.vocab_size,
                               batch_size=batch["input_ids"].shape[0], seq_len=batch["input_ids"].shape[1])
    return None


def peer_step_row(name: str, repeats: int, warmup: int = 2, module=None, datamodule=None) -> dict:
    """Fixed-batch training step of ours vs the peers at config ``name``'s dims (see the module docstring)."""
    cfg = load_config(name)
    if module is None:
        module, datamodule = build_module_and_data(cfg)
    batch = next(iter(datamodule.train_dataloader()))
    dims = config_dims(cfg, module.model, batch)
    init = cfg["model"]["init_args"]
    row = {"config": name, "model_name": init["model_name"], "skipped": {}}
    if dims is None:
        row["skipped"]["all peers"] = f"{init['model_name']}: no peer at equal dims is built for this model kind"
        return row
    if isinstance(dims, DecoderOnlyDims):
        builders = {"ours": lambda: build_ours_decoder_only(dims), XT: lambda: build_xtransformer_decoder_only(dims)}
        fixed = make_lm_batch(dims)
        tokens = dims.tokens_per_batch
    else:
        if init["model_name"] == "transformer":
            builders = {"ours": lambda: build_ours(dims), XT: lambda: build_xtransformer_seq2seq(dims),
                        "torch.nn.Transformer": lambda: build_torch_transformer(dims)}
        else:
            builders = {"ours": lambda: build_universal(dims, "fixed"),
                        XT_TIED: lambda: build_xtransformer_seq2seq(dims, True)}
            if init["model_config"].get("recurrence") == "act":  # for scale: ACT runs up to act_max_steps
                builders["ours (ACT)"] = lambda: build_universal(dims, "act")
        fixed = make_batch(dims)
        tokens = dims.tokens_per_batch
    builders[SHARED] = lambda: build_shared_output_layer(dims)
    builders[OURS_SHARED] = lambda: build_shared_output_layer(dims, ours=True)
    if why := missing_package("x-transformers"):
        row["skipped"].update({k: why for k in (XT, XT_TIED) if k in builders})
    torch.manual_seed(0)
    built = {k: b() for k, b in builders.items() if k not in row["skipped"]}
    timings = time_interleaved({k: peer_step_fn(c, fixed) for k, c in built.items()}, repeats=repeats,
                               warmup=warmup)
    row.update({"label": dims.label(), "dims": dims.__dict__.copy(), "parameters": parameter_report(built, "ours"),
                "seconds": {k: t.median for k, t in timings.items()},
                "spread": {k: t.spread for k, t in timings.items()}})
    ours, shared, ours_shared = timings["ours"].median, timings[SHARED].median, timings[OURS_SHARED].median
    # "ours (ACT)" is shown, not compared
    peers = [k for k in timings if not k.startswith("ours") and k not in (SHARED, OURS_SHARED)]
    row["ratios"] = {f"ours / {k}": timings[k].median / ours for k in peers}
    row["shared_share"] = ours_shared / ours
    if dims.vocab_size >= FUSED_OUTPUT_LOSS_MIN_VOCAB:  # below, both run the same code: the ratio is noise
        row["output_loss_speedup"] = shared / ours_shared  # ours' output layer + loss vs the peers'
    row["ratios_without_shared"] = {f"ours / {k}": (timings[k].median - shared) / (ours - ours_shared)
                                    for k in peers if ours > ours_shared}
    row["tokens_per_s"] = {k: tokens / t.median for k, t in timings.items()}
    return row


class SharedOutputLayer(torch.nn.Module):
    """What every contender of a row computes identically: the tied embedding of the target tokens, the output
    projection onto the vocabulary with the same matrix, and the cross-entropy (no layers in between).

    Initialised as the contenders' tied embeddings are (std d^-0.5, inputs scaled by sqrt(d)), so that the logits
    have the magnitude of a real model's (std ~1): ``nn.Embedding``'s N(0, 1) would give logits of std ~sqrt(d) and
    a softmax full of denormal floats, which the CPU computes tens of times slower."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        torch.nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.scale = d_model ** 0.5

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(self.embed(ids) * self.scale, self.embed.weight)


def build_shared_output_layer(dims: Seq2SeqDims | DecoderOnlyDims, ours: bool = False) -> Seq2SeqContender:
    """:class:`SharedOutputLayer` at ``dims`` with the loss of the row's peers (decoder-only: next-token
    cross-entropy over ``input_ids``; seq2seq: over ``tgt_in`` -> ``tgt_out``), or (``ours``) the same loss as
    ours computes it: fused with the projection where :mod:`ut.lit`'s modules fuse it."""
    model = SharedOutputLayer(dims.vocab_size, dims.d_model)
    lm = isinstance(dims, DecoderOnlyDims)
    fused = ours and dims.vocab_size >= FUSED_OUTPUT_LOSS_MIN_VOCAB

    def loss(m, batch):
        ids, target = (batch["input_ids"], batch["input_ids"]) if lm else (batch["tgt_in"], batch["tgt_out"])
        if not fused:
            logits = m(ids)
            return lm_loss(logits, ids) if lm else F.cross_entropy(logits.flatten(0, 1), target.flatten())
        states = m.embed(ids) * m.scale
        if lm:
            states, target = states[:, :-1], target[:, 1:]
        return linear_cross_entropy(states, m.embed.weight, target, None, 0.0)[0].loss

    return Seq2SeqContender(OURS_SHARED if ours else SHARED, model, loss)


# ------------------------------------------------------------------ Lightning vs bare loop


class _IterationClock:
    """Timestamps at the end of every training iteration (Lightning callback or called by hand)."""

    def __init__(self):
        self.ends: list[float] = []

    def mark(self) -> None:
        self.ends.append(time.perf_counter())

    def intervals(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.ends[skip:], self.ends[skip + 1 :])]


def _clock_callback(clock: _IterationClock):
    import lightning as L

    class IterationClock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.mark()

    return IterationClock()


def _trainer(cfg: dict, steps: int, callbacks: list, logger: str, log_dir: str):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from ut.precision import resolve_precision

    t = cfg.get("trainer", {})
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, precision=resolve_precision(
            t.get("precision", "auto"), "cpu"), gradient_clip_val=t.get("gradient_clip_val"),
        log_every_n_steps=t.get("log_every_n_steps", 50), logger=CSVLogger(log_dir) if logger == "csv" else False,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, barebones=False)


@contextlib.contextmanager
def _quiet_lightning():
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def lightning_chunk(module, datamodule, cfg: dict, steps: int, logger: str = "csv") -> list[float]:
    """Per-iteration seconds of ``steps`` Lightning training steps (the first two intervals dropped: warm-up)."""
    clock = _IterationClock()
    with tempfile.TemporaryDirectory() as log_dir, _quiet_lightning():
        trainer = _trainer(cfg, steps, [_clock_callback(clock)], logger, log_dir)
        trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    return clock.intervals(skip=2)


def bare_step_fn(module, clip: float | None):
    """One training step of ``module`` without Lightning: the same forward, loss, clipping, Adam and schedule."""
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]

    def step(batch) -> torch.Tensor:
        out = module.training_forward(batch)  # as training_step: the fused output loss where it applies
        task, _ = module.task_loss(batch, out)
        loss = module._total_loss(task, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        return loss.detach()

    return step


def bare_chunk(step, loader, steps: int) -> list[float]:
    clock = _IterationClock()
    it = iter(loader)
    for _ in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        step(batch)
        clock.mark()
    return clock.intervals(skip=2)


def fixed_chunk(step, batch, steps: int) -> list[float]:
    clock = _IterationClock()
    for _ in range(steps):
        step(batch)
        clock.mark()
    return clock.intervals(skip=2)


def lightning_overhead_row(name: str, steps: int, repeats: int, logger: str = "csv", module=None,
                           datamodule=None) -> dict:
    """Lightning vs bare loop vs fixed-batch step over the same module (see the module docstring)."""
    cfg = load_config(name)
    if module is None:
        module, datamodule = build_module_and_data(cfg)
    clip = cfg.get("trainer", {}).get("gradient_clip_val")
    step = bare_step_fn(module, clip)
    loader = datamodule.train_dataloader()
    fixed = next(iter(loader))
    samples: dict[str, list[float]] = {"lightning": [], "bare": [], "fixed batch": []}
    chunk_medians: dict[str, list[float]] = {k: [] for k in samples}
    for r in range(repeats):
        chunks = [("lightning", lambda: lightning_chunk(module, datamodule, cfg, steps, logger)),
                  ("bare", lambda: bare_chunk(step, loader, steps)),
                  ("fixed batch", lambda: fixed_chunk(step, fixed, steps))]
        for key, run in chunks[r % 3:] + chunks[: r % 3]:
            times = run()
            samples[key] += times
            chunk_medians[key].append(statistics.median(times))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"config": name, "steps_per_chunk": steps, "repeats": repeats, "logger": logger,
            "seconds_per_step": med, "samples": {k: len(v) for k, v in samples.items()},
            "chunk_medians": chunk_medians,
            "framework_share": (med["lightning"] - med["bare"]) / med["lightning"],
            "data_share": (med["bare"] - med["fixed batch"]) / med["lightning"],
            "lightning_over_bare": med["lightning"] / med["bare"]}


def profile_lightning(name: str, steps: int, top: int = 20, logger: str = "csv", module=None,
                      datamodule=None) -> dict:
    """cProfile of ``steps`` Lightning steps: the ``top`` functions by own time, and the total."""
    cfg = load_config(name)
    if module is None:
        module, datamodule = build_module_and_data(cfg)
    lightning_chunk(module, datamodule, cfg, 3, logger)  # warm-up outside the profile
    prof = cProfile.Profile()
    prof.enable()
    lightning_chunk(module, datamodule, cfg, steps, logger)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})" if line else func, "calls": ncalls,
                     "own_s": tottime, "cumulative_s": cumtime, "file": file})
    rows.sort(key=lambda r: -r["own_s"])
    total = sum(r["own_s"] for r in rows)
    by_area: dict[str, float] = {}
    for r in rows:
        f = r["file"]
        area = ("lightning" if "/lightning/" in f or "/lightning_utilities/" in f or "/torchmetrics/" in f
                else "torch python" if "/torch/" in f else "ut (ours)" if "/ut/" in f
                else "torch C / builtins" if f == "~" else "other python")
        by_area[area] = by_area.get(area, 0.0) + r["own_s"]
    for r in rows:
        del r["file"]
    return {"config": name, "steps": steps, "total_own_s": total,
            "share_by_area": {k: v / total for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])},
            "top": rows[:top]}


def small_model_rows(configs: tuple[str, ...], repeats: int, steps: int, profile_config: str | None,
                     logger: str = "csv") -> dict:
    """Every small-regime row: peers and Lightning overhead per config, and one profile. A config whose data is
    missing is recorded under ``errors`` with the reason (the other configs still run)."""
    out: dict = {"peer_steps": [], "lightning_overhead": [], "errors": {}}
    for name in configs:
        try:
            module, datamodule = build_module_and_data(load_config(name))
        except Exception as err:  # noqa: BLE001 - a missing dataset skips this config, with its reason
            out["errors"][name] = f"{type(err).__name__}: {str(err)[:300]}"
            continue
        out["peer_steps"].append(peer_step_row(name, repeats, module=module, datamodule=datamodule))
        out["lightning_overhead"].append(lightning_overhead_row(name, steps, repeats, logger, module, datamodule))
        if name == profile_config:
            out["profile"] = profile_lightning(name, steps, logger=logger, module=module, datamodule=datamodule)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(SMALL_CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed chunk")
    parser.add_argument("--profile", default="algorithmic_transformer", help="config to cProfile (none: skip)")
    parser.add_argument("--logger", choices=["csv", "none"], default="csv")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from benchmarks.machine import machine_description

    result = {"machine": machine_description(),
              **small_model_rows(tuple(args.configs), args.repeats, args.steps,
                                 None if args.profile == "none" else args.profile, args.logger)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1, default=str)[:6000])


if __name__ == "__main__":
    main()
