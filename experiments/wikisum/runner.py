"""Train one WikiSum model for a budget, evaluate it, and record one results row (Liu et al. 2018, Tables 3-4).

Shared by every WikiSum experiment script (``table3.py``, ``table4.py``, ``lsweep.py``, ``demo.py``). A *run spec*
is a plain dict (one entry of an experiment YAML, merged over the file's ``defaults``)::

    name: T-ED                     # row label
    model: transformer             # ut.models registry name (transformer, universal, decoder_only, ...)
    model_config: {...}            # the model's config; vocabulary size, special ids, max_len come from the data
    data: {format: seq2seq, extractor: tfidf, input_length: 500, target_length: 128, batch_size: 4, ...}
    train: {max_steps: 200, max_time_s: 180, precision: bf16-mixed, optimizer: {...}, label_smoothing: 0.1}
    eval: {split: test, beam_size: 4, alpha: 0.6, max_len: 128}   # eval: null = measure speed / memory only

The training module is issue 3's :class:`ut.lit.seq2seq.Seq2SeqModule` (``format: seq2seq``) or
:class:`ut.lit.language_model.LanguageModelModule` (``format: lm``), on a Lightning ``Trainer`` with W&B in
offline mode (``logger="wandb"``) or no logger. Measured: parameters, seconds per training step (median, the
first two steps excluded), peak resident memory of the process (``ru_maxrss``; with ``isolate=True`` each run has
its own process, so the peak is that run's; VmHWM, see ``_rss_mb``), the training-loss curve, and the evaluation of
:func:`ut.eval.summarization.evaluate_summarization`. One attention map (last layer, mean over heads, first test
example) and, for ACT models, the ponder times are saved for the report (``maps/<slug>.npz``).

``python -m experiments.wikisum.runner SPEC.json OUT_DIR ROW.json`` runs one spec (what ``isolate=True`` calls).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ut.eval.report import slug

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "wikisum_sample"


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base`` (nested dicts merged, everything else replaced); neither is changed."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_experiment(path: str | Path, common: str | Path | None = CONFIG_DIR / "common.yaml") -> dict:
    """An experiment YAML (``title``, ``notes``, ``defaults``, ``runs`` and/or ``sweep``) with every run merged over
    ``common.yaml`` and the file's ``defaults``. A ``sweep`` (``lengths`` x ``models``) expands into one run per
    (model, L), grouped by model for the L-sweep plot."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    unknown = sorted(set(config) - {"title", "notes", "defaults", "runs", "sweep"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {unknown}")
    base = yaml.safe_load(Path(common).read_text()) if common else {}
    defaults = deep_merge(base, config.get("defaults") or {})
    runs = list(config.get("runs") or [])
    sweep = config.get("sweep")
    if sweep:
        for model in sweep["models"]:
            for length in sweep["lengths"]:
                run = deep_merge(model, {"name": f"{model['name']} L={length}",
                                         "data": {"input_length": length, "train_min_input_tokens": length}})
                run["group"] = model["name"]
                runs.append(run)
    config["runs"] = [deep_merge(defaults, run) for run in runs]
    for run in config["runs"]:
        check_spec(run, path)
    return config


SPEC_KEYS = {"name", "model", "model_config", "data", "train", "eval", "size", "group"}


def check_spec(spec: dict, where: Any = "spec") -> None:
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where}: run {spec.get('name')!r} has unknown keys {unknown}; valid: {sorted(SPEC_KEYS)}")
    for key in ("name", "model", "data"):
        if key not in spec:
            raise ValueError(f"{where}: a run needs {key!r}")


def machine_info() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform()}


def _rss_mb() -> float:
    """Peak resident memory of this process image: VmHWM (Linux); ru_maxrss elsewhere. ru_maxrss survives exec, so
    in a child it would also count the parent's peak (e.g. the dataset build of the driver)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def model_config_for(spec: dict, dm) -> dict:
    """The spec's ``size`` + ``model_config`` completed with the data's vocabulary, special ids and positions."""
    import dataclasses

    from ut.models import model_classes

    _, config_cls = model_classes(spec["model"])

    fields = {f.name for f in dataclasses.fields(config_cls)}
    # ``size`` is shared by models of different families: keys a model does not have are skipped;
    # ``model_config`` is the model's own (unknown keys are an error, raised by the config)
    cfg = {k: v for k, v in spec.get("size", {}).items() if k in fields}
    cfg.update(spec.get("model_config", {}))
    ids = dm.special_ids()
    data_keys = {"vocab_size": dm.vocab_size, "src_vocab_size": dm.vocab_size, "tgt_vocab_size": dm.vocab_size,
                 "max_len": dm.max_positions + 1, **ids}
    for k, v in data_keys.items():
        if k in fields and k not in cfg:
            cfg[k] = v
    return cfg


def _step_stats():
    """A Lightning callback recording per-step wall time and training loss (built lazily: lightning is heavy)."""
    import lightning as L

    class StepStats(L.Callback):
        def __init__(self):
            self.times: list[float] = []
            self.curve: list[tuple[int, float]] = []
            self._t0 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self._t0)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.curve.append((trainer.global_step, float(loss)))

    return StepStats()


def _maps(model, dm, path: Path) -> list[str]:
    """Save the last layer's attention (mean over heads) and ACT ponder times of the first test example."""
    import numpy as np
    import torch

    batch = next(iter(dm.eval_dataloader("test")))
    batch = {k: v[:1] for k, v in batch.items()}
    model.eval()
    saved: dict[str, Any] = {}
    with torch.no_grad():
        if dm.format == "lm":
            out = model(batch["input_ids"], batch["attention_mask"], need_weights=True)
        else:
            out = model(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"], need_weights=True)
    for stream in ("decoder_cross", "decoder_self", "encoder"):
        maps = out.attentions.get(stream) if out.attentions else None
        if maps and maps[-1] is not None:
            w = maps[-1][0].float().mean(0)  # (Lq, Lk)
            saved[f"attention_{stream}"] = w[:256, :1024].numpy()  # cropped: rows / columns beyond are not drawn
    for stream, t in (out.ponder_time or {}).items():
        saved[f"ponder_{stream}"] = t[0].float().numpy()
    if saved:
        np.savez_compressed(path, **saved)
    return sorted(saved)


def run_in_process(spec: dict, out_dir: str | Path, logger: str = "none", progress: bool = True,
                   data_dir: str | Path | None = None) -> dict:
    """Train + evaluate one spec here; returns the results row (see the module docstring)."""
    import lightning as L

    from ut.data.wikisum import WikiSumDataModule
    from ut.eval.summarization import evaluate_summarization, log_examples_table
    from ut.lit.base import count_parameters

    check_spec(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = {"max_steps": 100, "max_time_s": None, "precision": "32-true", "optimizer": {}, "label_smoothing": 0.1,
             "seed": 0, "gradient_clip_val": 1.0, **spec.get("train", {})}
    data = {**spec["data"]}
    data["data_dir"] = str(data_dir or data.get("data_dir") or DEFAULT_DATA_DIR)
    L.seed_everything(train["seed"], workers=True, verbose=False)
    dm = WikiSumDataModule(**data)
    dm.setup()
    base_rss = _current_rss_mb()
    model_config = model_config_for(spec, dm)
    if dm.format == "lm":
        from ut.lit.language_model import LanguageModelModule as Module
    else:
        from ut.lit.seq2seq import Seq2SeqModule as Module
    module = Module(model_name=spec["model"], model_config=model_config, optimizer=train["optimizer"],
                    label_smoothing=train["label_smoothing"])
    params = count_parameters(module.model)["total"]
    row: dict[str, Any] = {
        "name": spec["name"], "model": spec["model"], "format": dm.format, "extractor": dm.extractor,
        "L": dm.input_length, "target_length": dm.target_length, "params": params, "status": "ok",
        "spec": spec, "model_config": model_config, "group": spec.get("group"),
    }
    loggers: Any = False
    if logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", "offline")
        loggers = WandbLogger(project="wikisum", name=spec["name"], save_dir=str(out_dir), offline=True)
    stats = _step_stats()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=train["max_steps"], max_epochs=-1,
        max_time={"seconds": train["max_time_s"]} if train["max_time_s"] else None,
        precision=train["precision"], gradient_clip_val=train["gradient_clip_val"], logger=loggers,
        callbacks=[stats], limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=progress, log_every_n_steps=5,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    row["train_time_s"] = time.perf_counter() - start
    row["steps"] = int(trainer.global_step)
    timed = stats.times[2:] or stats.times
    row["time_per_step_s"] = statistics.median(timed) if timed else float("nan")
    row["curve"] = stats.curve
    row["final_train_loss"] = statistics.fmean(v for _, v in stats.curve[-10:]) if stats.curve else float("nan")
    row["peak_rss_mb"] = _rss_mb()
    row["base_rss_mb"] = base_rss
    model = module.model
    ev = spec.get("eval")
    if ev:
        ev = {"split": "test", "beam_size": 4, "alpha": 0.6, "max_len": None, "max_examples": None, **ev}
        model.float()  # evaluation in fp32 whatever the training precision
        res = evaluate_summarization(model, dm, ev["split"], ev["beam_size"], ev["alpha"], ev["max_len"],
                                     ev["max_examples"], progress=progress)
        row["metrics"] = res.metrics
        row["samples"] = res.examples
        if loggers:
            log_examples_table(loggers, res.examples, key=f"{ev['split']}/samples")
            loggers.log_metrics({f"{ev['split']}/{k}": v for k, v in res.metrics.items()})
        try:
            row["maps"] = _maps(model, dm, out_dir / f"{slug(spec['name'])}.npz")
        except Exception as err:  # a long-attention kind may not return weights: the report says so
            row["maps"] = []
            row["maps_error"] = f"{type(err).__name__}: {err}"
    if loggers:
        try:
            loggers.experiment.finish()  # flush the offline run; a logging problem never discards the results
        except Exception as err:
            row["logger_error"] = f"{type(err).__name__}: {err}"
    return row


def run(spec: dict, out_dir: str | Path, logger: str = "none", progress: bool = True, isolate: bool = False,
        timeout_s: float | None = None, data_dir: str | Path | None = None) -> dict:
    """Run one spec, in this process or (``isolate``) in a child process with its own memory peak and a timeout.

    A run that fails or times out returns a row with ``status`` saying why (the tables print it as the paper did
    for models that did not fit) instead of raising.
    """
    if not isolate:
        try:
            return run_in_process(spec, out_dir, logger, progress, data_dir)
        except Exception as err:
            return _failed(spec, f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / f"{slug(spec['name'])}.spec.json"
    row_path = out_dir / f"{slug(spec['name'])}.row.json"
    spec_path.write_text(json.dumps(spec))
    row_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "experiments.wikisum.runner", str(spec_path), str(out_dir), str(row_path),
           "--logger", logger] + (["--data-dir", str(data_dir)] if data_dir else []) + \
        ([] if progress else ["--no-progress"])
    try:  # stdout / stderr pass through: the child's progress bars show
        proc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _failed(spec, f"not run: over the {timeout_s:.0f} s limit on this machine")
    if row_path.is_file():
        return json.loads(row_path.read_text())  # a failure inside the run writes its reason there too
    why = "out of memory (killed)" if proc.returncode in (-9, 137) else f"failed (exit {proc.returncode})"
    return _failed(spec, why)


def _failed(spec: dict, status: str) -> dict:
    data = spec.get("data", {})
    return {"name": spec["name"], "model": spec["model"], "format": data.get("format", "seq2seq"),
            "extractor": data.get("extractor", "tfidf"), "L": data.get("input_length"), "status": status,
            "spec": spec}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="run one WikiSum spec (used by run(isolate=True))")
    p.add_argument("spec")
    p.add_argument("out_dir")
    p.add_argument("row")
    p.add_argument("--logger", default="none", choices=("none", "wandb"))
    p.add_argument("--data-dir")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    try:
        row = run_in_process(spec, args.out_dir, args.logger, not args.no_progress, args.data_dir)
    except MemoryError:
        row = _failed(spec, "out of memory")
    except Exception as err:
        first = str(err).splitlines()[0][:200] if str(err) else ""
        oom = "can't allocate memory" in str(err) or "out of memory" in str(err).lower()
        row = _failed(spec, f"out of memory: {first}" if oom else f"failed: {type(err).__name__}: {first}")
        Path(args.row).write_text(json.dumps(row, default=float))
        raise
    Path(args.row).write_text(json.dumps(row, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
