"""The sparse UT (``transition="moe"``) trains through the CLI from the UT-paper configs: the algorithmic
encoder-decoder at fixed depth and under ACT, and the bAbI fact-QA model under ACT; the MoE balancing loss and the
ponder loss both reach the training loss and are logged under their own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ut.lit.conftest import write_babi
from ut.cli import cli_main
from ut.nn.moe import MoEFeedForward

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "experiments/ut_paper/configs"
M = "--model.init_args.model_config."
D = "--data.init_args."
TINY_MODEL = [M + "d_model", "16", M + "n_heads", "2", M + "d_ff", "8", M + "transition", "moe", M + "n_experts", "4",
              M + "moe_top_k", "2"]
TINY_ALGORITHMIC = [D + "train_max_len", "8", D + "eval_max_len", "12", D + "val_size", "4", D + "test_size", "4",
                    D + "batch_size", "4", D + "eval_batch_size", "4"]


def fit(config: str, tmp_path: Path, *extra: str):
    return cli_main(["fit", "--config", str(CONFIGS / config), "--trainer.max_steps", "4", "--run.logger", "none",
                     "--run.save_dir", str(tmp_path), "--trainer.enable_checkpointing", "false",
                     "--trainer.callbacks", "[]", *TINY_MODEL, *extra])


@pytest.mark.parametrize("config,halting", [("algorithmic_ut.yaml", False), ("algorithmic_ut_act.yaml", True)])
def test_the_algorithmic_ut_trains_sparse_through_the_cli(config, halting, tmp_path):
    cli = fit(config, tmp_path, *TINY_ALGORITHMIC)
    assert cli.trainer.global_step == 4
    assert sum(isinstance(m, MoEFeedForward) for m in cli.model.modules()) == 2  # one per stack
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert logged["train/moe_loss"] > 0
    assert ("train/ponder_loss" in logged) == halting
    # the final step's total is the task loss plus both auxiliary losses, each logged apart
    total = logged["train/task_loss"] + logged["train/moe_loss"] + logged.get("train/ponder_loss", 0.0)
    assert logged["train/loss"] == pytest.approx(total, rel=1e-5)


def test_the_babi_fact_qa_ut_trains_sparse_under_act_through_the_cli(tmp_path):
    babi = write_babi(tmp_path / "babi", n_stories=4, tasks=(1,))
    cli = fit("babi_1k_ut_act.yaml", tmp_path, D + "data_dir", str(babi), D + "tasks", "[1]", D + "batch_size", "4")
    assert cli.trainer.global_step == 4
    logged = cli.trainer.callback_metrics
    assert {"train/moe_loss", "train/ponder_loss"} <= set(logged)
