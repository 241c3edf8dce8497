"""Fit one config, test the final weights, write a results JSON: the unit of work of the comparison scripts and of
the ablation runner.

    python -m experiments.run_training --config experiments/ut_paper/configs/algorithmic_ut.yaml \\
        --out results/copy_ut.json -- --data.init_args.task copy --run.logger csv

Everything after ``--`` is passed to ``ut-train fit`` unchanged. The JSON holds the exact command, the machine, the
wall time, the parameter count, and the val / test metrics of the FINAL model (no checkpoint selection), plus the
data module's notes (bAbI 10k fallbacks, the LAMBADA split note) so that tables can name them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (f"{platform.node() or 'host'}: {os.cpu_count()} logical CPUs ({cpu}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s), python {platform.python_version()}")


def data_notes(datamodule) -> list[str]:
    notes = [str(m) for m in (getattr(datamodule, "fallbacks", None) or {}).values()]
    if getattr(datamodule, "split_note", None):
        notes.append(datamodule.split_note)
    return notes


def fit_and_test(config: str, overrides: list[str], out: str | Path, threads: int | None = 1) -> dict:
    """Run ``ut-train fit --config config *overrides``, then test the final model; write and return the results."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # 1 thread is several times faster on a shared 2-core machine
    from ut import precision
    from ut.cli import cli_main
    from ut.lit.base import count_parameters

    start = time.time()
    cli = cli_main(["fit", "--config", config, *overrides])
    fit_s = time.time() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    res = {
        "config": config,
        "overrides": overrides,
        "command": "python -m experiments.run_training " + shlex.join(
            ["--config", config, "--out", str(out), "--threads", str(threads), "--", *overrides]),
        "machine": machine(),
        "precision": {"requested": str(precision.LAST_CHOICE.requested), "used": str(cli.trainer.precision),
                      "reason": precision.LAST_CHOICE.reason} if precision.LAST_CHOICE else str(cli.trainer.precision),
        "model_name": cli.model.hparams.model_name,
        "model_config": dict(cli.model.hparams.model_config),
        "params": count_parameters(cli.model.model)["total"],
        "global_step": cli.trainer.global_step,
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(time.time() - start, 1),
        "metrics": {s: dict(m) for s, m in cli.model.last_eval_metrics.items()},
        "notes": data_notes(cli.datamodule),
    }
    _finish_wandb()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True))
    tmp.replace(out)  # atomic: a results file exists only for a finished run (the runner's resume rule)
    return res


def _finish_wandb() -> None:
    """Close this run's W&B run, so that the next run of the same process (the ablation runner) gets its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a training YAML under experiments/")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    res = fit_and_test(args.config, extra, args.out, args.threads or None)
    print(json.dumps({"out": args.out, "test": res["metrics"].get("test", {})}, sort_keys=True))


if __name__ == "__main__":
    main()
