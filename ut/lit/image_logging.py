"""Send a matplotlib figure or a table to whatever loggers the Trainer has.

W&B: ``wandb.Image`` / ``wandb.Table`` via WandbLogger; TensorBoard: ``add_figure`` / a markdown text; any other
logger (CSV): PNG / markdown files under ``<log_dir>/media/``. Always also saved under ``<default_root_dir>/media``
when no logger can take it, so that no picture is lost.
"""

from __future__ import annotations

import re
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from ut.lit.figures import close


def _media_dir(trainer) -> Path:
    for lg in trainer.loggers:
        if isinstance(lg, CSVLogger | TensorBoardLogger) and lg.log_dir:
            return Path(lg.log_dir) / "media"
    return Path(trainer.default_root_dir) / "media"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def log_figure(trainer, key: str, fig, step: int | None = None) -> None:
    """Log ``fig`` under ``key`` to every logger of ``trainer`` (rank 0 only), then close it."""
    if trainer.global_rank != 0:
        close(fig)
        return
    step = trainer.global_step if step is None else step
    saved_to_file = False
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            lg.experiment.log({key: wandb.Image(fig), "trainer/global_step": step})
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_figure(key, fig, global_step=step, close=False)
        elif not saved_to_file:
            _save_png(trainer, key, fig, step)
            saved_to_file = True
    if not trainer.loggers:
        _save_png(trainer, key, fig, step)
    close(fig)


def _save_png(trainer, key: str, fig, step: int) -> None:
    out = _media_dir(trainer)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{_safe(key)}_step{step}.png", dpi=80)


def log_table(trainer, key: str, columns: list[str], rows: list[list], markdown: str) -> None:
    """Log a table: a W&B Table, TensorBoard text, and always ``<media>/<key>.md``."""
    if trainer.global_rank != 0:
        return
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            lg.log_table(key=key, columns=columns, data=rows)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_text(key, markdown, global_step=trainer.global_step)
    out = _media_dir(trainer)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{_safe(key)}.md").write_text(markdown)
