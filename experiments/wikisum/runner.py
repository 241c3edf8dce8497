"""Run one WikiSum config with ``ut-train fit`` in its own process and collect its results row (Liu et al. 2018,
Tables 3-4 and the L sweep).

A run is a LightningCLI YAML (``configs/<experiment>/<run>.yaml``, written by ``configs/generate.py``); this module
adds nothing to it but where it writes and, when asked, overrides (data folder, step budget, logger, fast_dev_run):
the Trainer, the device and the precision are the config's. Each run is a child process
(``python -m ut.cli fit --config ...``, cwd = the repository root), so its peak memory is its own and a run that is
killed or too slow becomes a row with a status instead of ending the experiment.

The row merges what the config's callbacks wrote into the run folder: ``record.json``
(:class:`ut.lit.callbacks.RunRecordCallback`: s/step, learning curves, peak memory, precision, device) and
``summarization_eval.json`` (:class:`ut.lit.callbacks.SummarizationEvalCallback`: log-ppl, ROUGE, decoded samples),
plus the last picture of each attention / ponder map the callbacks drew (``figures``). Paths and the command in a
row are relative to the repository root.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "wikisum_sample"


def rel(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root (``..`` for a path outside it)."""
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)


def relative_argv(argv: list[str] | None) -> list[str]:
    """Command-line arguments with every absolute path (``/x`` or ``--flag=/x``) made relative to the repository
    root, so that a recorded command names no machine's folders."""
    out = []
    for a in argv or []:
        flag, eq, value = a.rpartition("=") if a.startswith("--") and "=" in a else ("", "", a)
        out.append(f"{flag}{eq}{rel(value)}" if os.path.isabs(value) else a)
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """The YAML of a run, with a clear error for a missing file or a file that is not a run config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run config at {path}")
    cfg = yaml.safe_load(path.read_text())
    missing = [k for k in ("trainer", "model", "data", "run") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ValueError(f"{path}: not a ut-train run config (missing {missing})")
    return cfg


def label_of(path: str | Path) -> tuple[str, str | None]:
    """(row label, model family) of a config: the generator's when it wrote the file, else (``run.name``, None)."""
    from experiments.wikisum.configs.generate import RUNS

    path = Path(path).resolve()
    for run in RUNS:
        if run.path.resolve() == path:
            return run.label, run.family
    return str(load_config(path)["run"].get("name") or path.stem), None


def run_dir_of(cfg: dict[str, Any], save_dir: str | Path) -> Path:
    """The folder ``ut-train`` writes the run into (:meth:`ut.lit.run_config.RunConfig.run_dir`)."""
    from ut.lit.run_config import RunConfig

    run = RunConfig(**{**cfg["run"], "save_dir": str(save_dir)})
    return run.run_dir(cfg["model"]["init_args"]["model_name"], cfg.get("seed_everything", 0))


def overrides_for(cfg: dict[str, Any], data_dir: str | Path | None = None, max_steps: int | None = None,
                  logger: str = "csv", fast_dev_run: bool = False, extra: list[str] | None = None) -> list[str]:
    """The ``ut-train`` flags of a scripted run: no progress bar, the logger, and the asked overrides. A step budget
    below the config's validation interval validates at the last step instead (so there is a log-ppl point)."""
    out = ["--trainer.enable_progress_bar=false", f"--run.logger={logger}"]
    if data_dir is not None:
        out.append(f"--data.init_args.data_dir={rel(data_dir)}")
    if max_steps is not None:
        out.append(f"--trainer.max_steps={max_steps}")
        interval = cfg["trainer"].get("val_check_interval")
        if isinstance(interval, int) and interval > max_steps:
            out.append(f"--trainer.val_check_interval={max_steps}")
    if fast_dev_run:
        out.append("--trainer.fast_dev_run=true")
    return out + list(extra or [])


def _figures(run_dir: Path) -> list[str]:
    """The last-step PNG of every picture the callbacks drew (``<key>_step<N>.png``), relative to the repo root."""
    latest: dict[str, tuple[int, Path]] = {}
    for p in run_dir.rglob("*_step*.png"):
        key, _, step = p.stem.rpartition("_step")
        if step.isdigit() and int(step) >= latest.get(key, (-1, p))[0]:
            latest[key] = (int(step), p)
    return sorted(rel(p) for _, p in latest.values())


def failed_row(label: str, config: str | Path, status: str, **extra) -> dict[str, Any]:
    cfg = load_config(config)
    data = cfg["data"].get("init_args", {})
    return {"name": label, "config": rel(config), "model": cfg["model"]["init_args"].get("model_name"),
            "format": data.get("format"), "extractor": data.get("extractor"), "L": data.get("input_length"),
            "status": status, **extra}


def run_config(config: str | Path, save_dir: str | Path, overrides: list[str] | None = None,
               timeout_s: float | None = None, log: bool = True) -> dict[str, Any]:
    """``ut-train fit --config CONFIG --run.save_dir SAVE_DIR *overrides`` in a child process; the results row.

    The child's output goes to ``<run dir>/fit.log``; a failure's last lines are in the row's ``error``.
    """
    config = Path(config)
    cfg = load_config(config)
    label, family = label_of(config)
    overrides = list(overrides or [])
    cmd = [sys.executable, "-m", "ut.cli", "fit", "--config", rel(config), f"--run.save_dir={rel(save_dir)}",
           *overrides]
    command = shlex.join(["ut-train", *cmd[3:]])
    run_dir = run_dir_of(cfg, save_dir)
    if not run_dir.is_absolute():
        run_dir = REPO_ROOT / run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("record.json", "summarization_eval.json"):
        (run_dir / stale).unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    log_path = run_dir / "fit.log"
    try:
        with open(log_path, "w") as f:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                  timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return failed_row(label, config, f"not run: over the {timeout_s:.0f} s limit", command=command,
                          group=family)
    wall = time.perf_counter() - start
    record = run_dir / "record.json"
    if proc.returncode != 0 or not record.is_file():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        why = "out of memory (killed)" if proc.returncode in (-9, 137) else f"failed (exit {proc.returncode})"
        if any("out of memory" in line.lower() or "can't allocate memory" in line for line in tail):
            why = "out of memory"
        if log:
            print(f"  {label}: {why}; last lines of {rel(log_path)}:\n    " + "\n    ".join(tail), flush=True)
        return failed_row(label, config, why, command=command, error="\n".join(tail), log=rel(log_path),
                          group=family)
    row: dict[str, Any] = json.loads(record.read_text())
    data = row.get("data") or {}
    row.update({"name": label, "group": family, "config": rel(config), "command": command, "status": "ok",
                "wall_s": wall,
                "model": row.get("model_name"), "format": data.get("format"), "extractor": data.get("extractor"),
                "L": data.get("input_length"), "run_dir": rel(run_dir), "log": rel(log_path),
                "figures": _figures(run_dir)})
    ev = run_dir / "summarization_eval.json"
    if ev.is_file():
        res = json.loads(ev.read_text())
        row["metrics"], row["samples"] = res["metrics"], res["samples"]
        row["eval"] = {k: res[k] for k in ("split", "beam_size", "alpha", "max_len", "max_examples", "step")}
    elif row.get("val_curve"):
        row["metrics"] = {"log_ppl": row["val_curve"][-1][1]}  # validation log-ppl at the last step
    return row


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="run one WikiSum config through ut-train and print its results row")
    p.add_argument("config")
    p.add_argument("--save-dir", default="outputs")
    p.add_argument("--timeout-s", type=float)
    p.add_argument("overrides", nargs="*", help="more ut-train flags, after --")
    args = p.parse_args(argv)
    row = run_config(args.config, args.save_dir, overrides_for(load_config(args.config)) + args.overrides,
                     args.timeout_s)
    print(json.dumps({k: v for k, v in row.items() if k not in ("curve", "samples")}, indent=1, default=float))
    return 0 if row["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
