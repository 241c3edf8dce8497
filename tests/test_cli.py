"""``ut-train`` (ut/cli.py): every training config under experiments/ loads and runs a fast_dev_run; every key of
every config is commented; W&B is the default logger, offline unless asked, one run id across fit / resume / test,
never forced by an import; the config is logged once; the CSV alternative works and appends on resume; progress bars
follow the terminal; 2-process DDP on CPU. No test opens a network connection (W&B is only built, never started).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.loggers import WandbLogger

from tests.ut.lit.conftest import write_babi
from ut.cli import cli_main

REPO = Path(__file__).resolve().parents[1]
TRAINING_CONFIGS = sorted(p for p in (REPO / "experiments").rglob("*.yaml")
                          if {"model", "trainer", "data"} <= set(yaml.safe_load(p.read_text()) or {}))


def test_there_are_training_configs():
    names = {p.name for p in TRAINING_CONFIGS}
    assert {"algorithmic_transformer.yaml", "algorithmic_ut.yaml", "algorithmic_ut_act.yaml",
            "babi_1k_ut_act.yaml", "babi_1k_joint_ut_act.yaml", "babi_10k_ut_act.yaml"} <= names


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "experiments")))
def test_every_key_is_commented(path):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        assert " # " in line or line.rstrip().endswith(":") and " #" in line, f"{path.name}:{i} has no comment: {line}"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    babi = root / "babi"
    write_babi(babi, n_stories=4, tasks=range(1, 21))
    (babi / "en-10k").symlink_to(babi / "en", target_is_directory=True)
    lam = root / "lambada.jsonl"
    lam.write_text("".join(json.dumps({"text": f"the cat sat on the mat number {i} and then the cat"}) + "\n"
                           for i in range(40)))
    return {"babi": babi, "lambada": lam}


def tiny_overrides(path: Path, tiny_data) -> list[str]:
    data_cls = yaml.safe_load(path.read_text())["data"]["class_path"]
    d = "--data.init_args."
    if data_cls.endswith("AlgorithmicDataModule"):
        return [d + "train_max_len", "8", d + "eval_max_len", "12", d + "val_size", "4", d + "test_size", "4",
                d + "batch_size", "4", d + "eval_batch_size", "4"]
    if data_cls.endswith("BabiDataModule"):
        return [d + "data_dir", str(tiny_data["babi"]), d + "batch_size", "4"]
    if data_cls.endswith("LambadaDataModule"):
        return [d + "path", str(tiny_data["lambada"]), d + "batch_size", "4", d + "max_len", "32"]
    return []  # other families run as they are


# the WikiSum run configs need a data_prep build: tests/experiments/test_wikisum_experiments.py runs each of them
# through ut-train on a tiny build (test_every_config_runs_fast_dev_run_through_ut_train)
FAST_DEV_CONFIGS = [p for p in TRAINING_CONFIGS if "wikisum" not in p.relative_to(REPO).parts]


@pytest.mark.parametrize("path", FAST_DEV_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "experiments")))
def test_every_config_runs_fast_dev_run(path, tiny_data, tmp_path):
    cli = cli_main(["fit", "--config", str(path), "--trainer.fast_dev_run", "true", "--run.logger", "none",
                    "--run.save_dir", str(tmp_path), *tiny_overrides(path, tiny_data)])
    assert cli.trainer.global_step == 1
    assert cli.model.model is not None


def test_wandb_is_the_default_and_offline(tmp_path):
    path = REPO / "experiments/ut_paper/configs/algorithmic_ut_act.yaml"
    cli = cli_main(["--config", str(path), "--run.save_dir", str(tmp_path), "--run.experiment", "exp/x"],
                   run=False)
    logger = cli.trainer.logger
    assert isinstance(logger, WandbLogger)
    effective_mode = logger._wandb_init.get("mode") or os.environ.get("WANDB_MODE")  # None: wandb reads the env
    assert effective_mode == "offline" and logger._wandb_init["group"] == "exp/x"
    assert "universal" in logger._wandb_init["tags"]
    assert Path(cli.trainer.default_root_dir) == tmp_path / "exp_x" / "universal-seed0"
    assert any(type(c).__name__ == "ResumableDataOrder" for c in cli.trainer.callbacks)


def test_csv_logger_run_logs_config_params_images_and_table(tmp_path, tiny_data):
    path = REPO / "experiments/ut_paper/configs/algorithmic_ut_act.yaml"
    args = ["--config", str(path), "--run.logger", "csv", "--run.save_dir", str(tmp_path),
            "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", *tiny_overrides(path, tiny_data)]
    cli_main(["fit", *args])
    run_dir = tmp_path / "ut_paper_algorithmic" / "universal-seed0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list(run_dir.rglob("config.yaml"))  # in the logger's log dir
    hparams = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    assert hparams["params/total"] > 0 and hparams["config"]["model"]["init_args"]["model_name"] == "universal"
    media = {p.name.split("_step")[0] for p in (run_dir / "csv" / "media").glob("*.png")}
    assert {"val_attention_encoder_example0", "val_ponder_map_encoder", "val_ponder_hist_encoder"} <= media
    cli_main(["test", *args, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")])
    assert "test" in (run_dir / "csv" / "media" / "results_table.md").read_text()
    # an interrupted run continues from its last checkpoint with `--ckpt_path last`
    resumed = cli_main(["fit", *args, "--trainer.max_steps", "3", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 3


ALGO_UT_ACT = REPO / "experiments/ut_paper/configs/algorithmic_ut_act.yaml"


def test_importing_the_cli_sets_no_wandb_mode():
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env["PYTHONPATH"] = str(REPO)
    code = "import os, ut.cli, ut.lit.run_config; print(os.environ.get('WANDB_MODE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "None"


@pytest.mark.parametrize("online,env,mode", [(None, None, "offline"), (None, "disabled", None),
                                             (True, "offline", "online"), (False, "online", "offline")])
def test_wandb_mode_follows_run_online_then_the_environment(monkeypatch, tmp_path, online, env, mode):
    from ut.lit.run_config import RunConfig

    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    logger = RunConfig(save_dir=str(tmp_path), online=online).build_logger("universal", 0)
    assert logger._wandb_init.get("mode") == mode  # None: wandb.init reads $WANDB_MODE itself
    assert not logger._offline  # Lightning's offline flag would set WANDB_MODE=dryrun process-wide


def test_run_config_keeps_one_wandb_run_id_per_run_folder(tmp_path, monkeypatch):
    from ut.lit.run_config import RunConfig

    run = RunConfig(save_dir=str(tmp_path))
    first = run.build_logger("universal", 0)._wandb_init["id"]
    assert (run.run_dir("universal", 0) / "wandb_run_id").read_text().strip() == first
    assert run.build_logger("universal", 0, resume=True)._wandb_init["id"] == first
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker of the same fresh fit reads rank 0's id
    assert run.build_logger("universal", 0)._wandb_init["id"] == first
    monkeypatch.delenv("LOCAL_RANK")
    fresh = run.build_logger("universal", 0)._wandb_init["id"]  # a new fit from scratch is a new W&B run
    assert fresh != first and run.build_logger("universal", 0, resume=True)._wandb_init["id"] == fresh


def test_one_wandb_run_id_across_fit_resume_and_test(monkeypatch, tmp_path, tiny_data):
    """Real ``ut-train`` fit, test and resumed fit with W&B disabled (no files, no network)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = ["--config", str(ALGO_UT_ACT), "--run.save_dir", str(tmp_path), "--run.online", "null",
            "--trainer.limit_val_batches", "1",
            "--trainer.val_check_interval", "1", "--trainer.limit_test_batches", "1",
            *tiny_overrides(ALGO_UT_ACT, tiny_data)]
    fit = cli_main(["fit", *args, "--trainer.max_steps", "1"]).trainer.logger
    assert fit._wandb_init.get("mode") is None  # the user's WANDB_MODE decides
    ids = {fit._wandb_init["id"]}
    ids.add(cli_main(["test", *args, "--ckpt_path", "last"]).trainer.logger._wandb_init["id"])
    ids.add(cli_main(["fit", *args, "--trainer.max_steps", "2", "--ckpt_path", "last"]).trainer.logger
            ._wandb_init["id"])
    assert len(ids) == 1


def test_sweep_runs_get_their_own_name_folder_and_the_agents_id(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    monkeypatch.setenv("WANDB_PROJECT", "sweep-project")
    dirs = set()
    for run in ("abc123", "def456"):
        monkeypatch.setenv("WANDB_RUN_ID", run)
        cli = cli_main(["--config", str(ALGO_UT_ACT), "--run.save_dir", str(tmp_path)], run=False)
        assert cli.trainer.logger._wandb_init["id"] == run
        assert cli.trainer.logger._wandb_init["name"] == f"universal-seed0-{run}"
        assert cli.trainer.logger._wandb_init["project"] == "sweep-project"  # the agent's, not run.project
        dirs.add(cli.trainer.default_root_dir)
    assert len(dirs) == 2


def test_csv_metrics_are_appended_on_resume_and_the_config_logged_once(tmp_path, tiny_data):
    args = ["--config", str(ALGO_UT_ACT), "--run.logger", "csv", "--run.save_dir", str(tmp_path),
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps",
            "1", *tiny_overrides(ALGO_UT_ACT, tiny_data)]
    cli_main(["fit", *args, "--trainer.max_steps", "2"])
    csv_dir = tmp_path / "ut_paper_algorithmic" / "universal-seed0" / "csv"

    def steps():
        import csv

        with open(csv_dir / "metrics.csv") as f:
            return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})

    assert steps() == [0, 1]
    cli_main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last"])
    after = steps()
    assert after[:2] == [0, 1] and len(after) == 4  # the first run's rows are kept, the resumed run's added
    hparams = yaml.safe_load((csv_dir / "hparams.yaml").read_text())
    assert hparams["config"]["model"]["init_args"]["model_name"] == "universal"
    assert "model_name" not in hparams and "model_config" not in hparams  # no second, flattened copy
    assert hparams["precision/used"] == "32-true"
    cli_main(["fit", *args, "--trainer.max_steps", "1"])  # a fresh fit starts a new file
    assert steps() == [0]


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_follows_the_terminal_unless_set(monkeypatch, tmp_path, tty):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    cfg = tmp_path / "no_bar_key.yaml"
    data = yaml.safe_load(ALGO_UT_ACT.read_text())
    data["trainer"].pop("enable_progress_bar", None)
    cfg.write_text(yaml.safe_dump(data))
    base = ["--config", str(cfg), "--run.logger", "none", "--run.save_dir", str(tmp_path)]
    assert (cli_main(base, run=False).trainer.progress_bar_callback is not None) == tty
    off = cli_main([*base, "--trainer.enable_progress_bar", "false"], run=False)
    assert off.trainer.progress_bar_callback is None  # scripted runners pass the flag


WIKISUM_CONFIG = """
seed_everything: 0
trainer: {max_steps: 3, val_check_interval: 2, limit_val_batches: 1, num_sanity_val_steps: 0, log_every_n_steps: 1,
          enable_progress_bar: false, precision: 32-true}
model:
  class_path: ut.lit.Seq2SeqModule
  init_args:
    model_name: transformer
    model_config: {d_model: 16, n_heads: 2, d_ff: 32, n_encoder_layers: 1, n_decoder_layers: 1, dropout: 0.2}
data:
  class_path: ut.data.wikisum.WikiSumDataModule
  init_args: {format: seq2seq, extractor: tfidf, input_length: 32, target_length: 16, batch_size: 2}
"""


def test_wikisum_batch_sampler_trains_and_resumes_through_ut_train(tmp_path):
    """WikiSumDataModule's length-bucketing batch sampler through ``ut-train fit`` (the CLI always adds
    ResumableDataOrder), interrupted after 3 steps and resumed to 5."""
    from tests.experiments.wikisum_fixtures import build_tiny_wikisum

    build = build_tiny_wikisum(tmp_path / "wikisum")
    cfg = tmp_path / "wikisum.yaml"
    cfg.write_text(WIKISUM_CONFIG)
    args = ["--config", str(cfg), "--data.init_args.data_dir", str(build), "--run.logger", "csv",
            "--run.save_dir", str(tmp_path / "runs"), "--run.checkpoint_every_n_steps", "1"]
    first = cli_main(["fit", *args])
    assert first.trainer.global_step == 3
    order = next(c for c in first.trainer.callbacks if type(c).__name__ == "ResumableDataOrder")
    assert type(order.sampler).__name__ == "ResumableBatchSampler"
    resumed = cli_main(["fit", *args, "--trainer.max_steps", "5", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 5


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path, tiny_data):
    """2-process DDP (gloo) for a few steps through the real entry point; both ranks train, rank 0 writes."""
    path = REPO / "experiments/ut_paper/configs/algorithmic_transformer.yaml"
    cmd = [sys.executable, "-m", "ut.cli", "fit", "--config", str(path), "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.max_steps", "3",
           "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1", "--run.logger", "csv",
           "--run.save_dir", str(tmp_path), *tiny_overrides(path, tiny_data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    ckpt = tmp_path / "ut_paper_algorithmic" / "transformer-seed0" / "checkpoints" / "last.ckpt"
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3


@pytest.mark.gpu
def test_fsdp_from_config_on_gpu(tmp_path, tiny_data):
    """FSDP is selected by the config's trainer.strategy; Lightning's FSDP needs CUDA (on CPU it refuses clearly)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("FSDP needs a CUDA device")
    path = REPO / "experiments/ut_paper/configs/algorithmic_ut.yaml"
    cli = cli_main(["fit", "--config", str(path), "--trainer.strategy", "fsdp", "--trainer.accelerator", "gpu",
                    "--trainer.devices", "1", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                    "--trainer.limit_val_batches", "1", "--run.logger", "none", "--run.save_dir", str(tmp_path),
                    *tiny_overrides(path, tiny_data)])
    assert type(cli.trainer.strategy).__name__ == "FSDPStrategy" and cli.trainer.global_step == 2
