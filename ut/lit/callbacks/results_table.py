"""The final results table of a run: test (and last validation) metrics as a markdown table, logged to the loggers
(a W&B Table) and optionally written as JSON + markdown for the experiment scripts that aggregate runs."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from ut.lit.base import count_parameters
from ut.lit.image_logging import log_table


def metrics_markdown(metrics: dict[str, dict[str, float]]) -> str:
    """| metric | val | test | table of every metric of the given stages."""
    stages = [s for s in ("val", "test") if s in metrics]
    names = sorted({k for s in stages for k in metrics[s]})
    lines = ["| metric | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for n in names:
        cells = [f"{metrics[s][n]:.4g}" if n in metrics[s] else "" for s in stages]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class ResultsTableCallback(L.Callback):
    """After ``trainer.test``: log the metrics table; with ``path``, also write ``path`` (JSON) and ``.md``.

    Args:
        path: a JSON file to write (model name, parameter count, val / test metrics, global step); None: none.
    """

    def __init__(self, path: str | None = None):
        self.path = path

    def results(self, trainer, pl_module) -> dict:
        return {
            "model_name": pl_module.hparams.model_name,
            "model_config": dict(pl_module.hparams.model_config),
            "params": count_parameters(pl_module.model)["total"] if pl_module.model is not None else None,
            "global_step": trainer.global_step,
            "metrics": {s: dict(m) for s, m in pl_module.last_eval_metrics.items()},
        }

    def on_test_end(self, trainer, pl_module):
        res = self.results(trainer, pl_module)
        md = metrics_markdown(res["metrics"])
        rows = [[stage, k, float(v)] for stage, m in res["metrics"].items() for k, v in sorted(m.items())]
        log_table(trainer, "results/table", ["stage", "metric", "value"], rows, md)
        if self.path and trainer.global_rank == 0:
            p = Path(self.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(res, indent=1, sort_keys=True))
            p.with_suffix(".md").write_text(md)
