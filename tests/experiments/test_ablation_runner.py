"""The ablation runner (grid expansion, resumable runs, mean ± std aggregation) and the W&B sweep files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from experiments.ablations.runner import Grid, aggregate, main, markdown_table, mean_std
from ut.cli import cli_main

REPO = Path(__file__).resolve().parents[2]
GRIDS = sorted((REPO / "experiments/ablations/grids").glob("*.yaml"))
SWEEPS = sorted((REPO / "experiments/ablations/sweeps").glob("*.yaml"))
ABLATIONS = {"ut_steps", "act_on_off", "ponder_weight", "halting_bias", "shared_layers", "timestep_signal",
             "norm_placement", "transition"}


def assert_commented(path: Path) -> None:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.strip().startswith("#"):
            assert " # " in line, f"{path.name}:{i} has no comment: {line}"


def test_every_ablation_has_a_grid_and_a_sweep():
    assert {p.stem for p in GRIDS} == ABLATIONS == {p.stem for p in SWEEPS}


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.stem)
def test_grids_load_and_expand(path):
    assert_commented(path)
    grid = Grid.load(path)
    specs = grid.specs()
    assert len(specs) == len(grid.configs) * len(grid.overrides) * len(grid.seeds)
    assert len({s.run_id for s in specs}) == len(specs)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_parameters_are_valid_ut_train_arguments(path, tmp_path):
    assert_commented(path)
    sweep = yaml.safe_load(path.read_text())
    cmd = sweep["command"]
    args = cmd[cmd.index("fit") + 1: cmd.index("${args}")]
    swept = [f"--{k}={v['values'][-1]}" for k, v in sweep["parameters"].items()]
    cli = cli_main([*args, *swept, "--run.logger=none", f"--run.save_dir={tmp_path}"], run=False)
    cfg = cli.model.hparams
    for k, v in sweep["parameters"].items():
        if k.startswith("model.init_args.model_config."):
            assert cfg.model_config[k.rsplit(".", 1)[1]] == v["values"][-1]


def test_grid_rejects_unknown_keys(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("name: x\nconfigs: [experiments/ut_paper/configs/algorithmic_ut.yaml]\nseed: [1]\n")
    with pytest.raises(ValueError, match="unknown grid keys"):
        Grid.load(p)


def test_aggregate_mean_and_sample_std():
    results = [{"config_name": "c", "variant": "v", "params": 10, "metrics": {"test": {"acc": a}}}
               for a in (0.5, 0.7, 0.9)]
    rows = aggregate(results, ["test/acc"])
    m, sd = rows[0]["test/acc"]
    assert m == pytest.approx(0.7) and sd == pytest.approx(math.sqrt(((0.2**2) * 2) / 2))
    assert "0.700 ± 0.200" in markdown_table(rows, ["test/acc"])
    assert mean_std([1.0]) == (1.0, 0.0)


@pytest.mark.slow
def test_runner_end_to_end_parallel_and_resumable(tmp_path):
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "tiny", "configs": ["experiments/ut_paper/configs/algorithmic_transformer.yaml"],
        "overrides": {"L1": ["--model.init_args.model_config.n_encoder_layers=1"], "L2": []},
        "seeds": [0, 1], "metrics": ["test/token_acc"],
        "common": ["--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
                   "--data.init_args.train_max_len=6", "--data.init_args.eval_max_len=8",
                   "--data.init_args.val_size=4", "--data.init_args.test_size=4",
                   "--model.init_args.model_config.d_model=16",
                   "--model.init_args.model_config.n_heads=2", "--model.init_args.model_config.d_ff=32",
                   "--run.logger=none", f"--run.save_dir={tmp_path / 'outputs'}", "--trainer.callbacks=[]"]}))
    results = tmp_path / "results"
    main([str(grid), "--jobs", "2", "--results", str(results)])
    runs = sorted((results / "tiny" / "runs").glob("*.json"))
    assert len(runs) == 4
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    res = json.loads(runs[0].read_text())
    assert res["global_step"] == 2 and "token_acc" in res["metrics"]["test"] and res["command"].startswith("python")
    main([str(grid), "--jobs", "2", "--results", str(results)])  # resumed: nothing reruns
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    table = (results / "tiny" / "table.md").read_text()
    assert "4/4 runs finished" in table and "| algorithmic_transformer | L1 | 2 |" in table
    assert (results / "tiny" / "plot.png").is_file()
