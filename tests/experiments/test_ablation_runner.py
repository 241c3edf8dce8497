"""The ablation runner (grid expansion, cache keyed by config + arguments + code, loud failures, n/N progress,
results outside committed folders, titled plots, mean ± std aggregation) and the W&B sweep files generated from the
grids (no drift, every command a valid ut-train run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

import experiments.ablations.runner as R
from experiments.ablations import wandb_sweep as W
from experiments.ablations.runner import Grid, aggregate, main, markdown_table, mean_std
from experiments.run_training import repo_relative
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


@pytest.mark.parametrize("grid", GRIDS, ids=lambda p: p.stem)
def test_committed_sweeps_are_the_ones_generated_from_the_grids(grid):
    sweep = REPO / "experiments/ablations/sweeps" / grid.name
    assert sweep.read_text() == W.render(grid), f"run `python -m experiments.ablations.wandb_sweep write` ({sweep})"
    assert W.main(["check"]) == 0


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part] if isinstance(cfg, dict) else getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_commands_build_valid_ut_train_runs_with_the_swept_values(path, tmp_path):
    """What ``wandb agent`` runs: parse the YAML, expand every (config, variant) with the last seed into the agent's
    ``--key=value`` arguments, build the ut-train arguments and parse them with the CLI's own parser."""
    assert_commented(path)
    sweep = yaml.safe_load(path.read_text())
    cmd = sweep["command"]
    assert cmd[:5] == ["${env}", "${interpreter}", "-m", "experiments.ablations.wandb_sweep", "run"]
    assert cmd[-1] == "${args}"
    grid_path = REPO / cmd[5]
    grid = Grid.load(grid_path)
    assert sweep["parameters"]["grid_config"]["values"] == grid.configs  # no drift from the grid
    assert sweep["parameters"]["variant"]["values"] == list(grid.overrides)
    assert sweep["parameters"]["seed"]["values"] == grid.seeds
    assert sweep["metric"]["name"] in grid.metrics
    seed = grid.seeds[-1]
    for combo in W.combinations(sweep):
        if combo["seed"] != seed:
            continue
        spec, args = W.agent_run(grid_path, [f"--{k}={v}" for k, v in combo.items()])
        assert spec.config == combo["grid_config"] and spec.variant == combo["variant"]
        cli = cli_main(["--config", str(REPO / spec.config), *args, "--run.logger=none", f"--run.save_dir={tmp_path}"],
                       run=False)
        assert cli.config["seed_everything"] == seed
        for override in grid.overrides[combo["variant"]]:  # the variant's values win over the config file's
            key, _, value = override.removeprefix("--").partition("=")
            assert _get(cli.config, key) == yaml.safe_load(value), (path.name, override)


def test_sweep_run_gets_wandb_online_unless_the_environment_says(monkeypatch):
    grid = GRIDS[0]
    g = Grid.load(grid)
    agent = [f"--grid_config={g.configs[0]}", f"--variant={next(iter(g.overrides))}", f"--seed={g.seeds[0]}"]
    monkeypatch.delenv("WANDB_MODE", raising=False)
    _, args = W.agent_run(grid, agent)
    assert "--run.online=true" in args
    assert [a for a in args if a.startswith("--run.logger=")][-1] == "--run.logger=wandb"  # after the grid's csv
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert "--run.online=true" not in W.agent_run(grid, agent)[1]
    with pytest.raises(SystemExit, match="no run with"):
        W.agent_run(grid, [*agent[:2], "--seed=12345"])


def test_sweep_drift_is_detected(tmp_path, monkeypatch):
    grid = tmp_path / "grids" / "g.yaml"
    grid.parent.mkdir()
    grid.write_text(yaml.safe_dump({"name": "g", "configs": ["experiments/ut_paper/configs/algorithmic_ut.yaml"],
                                    "overrides": {"T2": ["--model.init_args.model_config.n_steps=2"]},
                                    "seeds": [0]}))
    monkeypatch.setattr(W, "GRIDS", grid.parent)
    monkeypatch.setattr(W, "SWEEPS", tmp_path / "sweeps")
    (tmp_path / "sweeps").mkdir()
    assert W.main(["check"]) == 1  # missing
    assert W.main(["write"]) == 0 and W.main(["check"]) == 0
    grid.write_text(grid.read_text().replace("T2", "T3"))
    assert W.main(["check"]) == 1  # the grid changed, the sweep did not


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
    assert main([str(grid), "--jobs", "2", "--results", str(results)]) == 0
    runs = sorted((results / "tiny" / "runs").glob("*.json"))
    assert len(runs) == 4
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    res = json.loads(runs[0].read_text())
    assert res["global_step"] == 2 and "token_acc" in res["metrics"]["test"] and res["command"].startswith("python")
    assert str(REPO) not in res["command"] and res["cache_key"] == R.cache_key(Grid.load(grid).specs()[0])
    main([str(grid), "--jobs", "2", "--results", str(results)])  # resumed: nothing reruns
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    table = (results / "tiny" / "table.md").read_text()
    assert "4/4 runs finished" in table and "| algorithmic_transformer | L1 | 2 |" in table
    assert (results / "tiny" / "plot.png").is_file()


class FakeRuns:
    """Stands in for the training subprocess: writes a results JSON (or fails for a variant with `boom`)."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, cmd, cwd=None, env=None, stdout=None, stderr=None):
        import subprocess

        self.calls.append(cmd)
        if any("boom" in a for a in cmd):
            return subprocess.CompletedProcess(cmd, 1)
        out = Path(cmd[cmd.index("--out") + 1])
        out.write_text(json.dumps({"metrics": {"test": {"acc": 0.5 + 0.1 * len(self.calls)}}, "params": 7,
                                   "command": "python -m experiments.run_training ..."}))
        return subprocess.CompletedProcess(cmd, 0)


@pytest.fixture
def fake_grid(tmp_path, monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(R.subprocess, "run", fake)
    config = tmp_path / "cfg.yaml"
    config.write_text((REPO / "experiments/ut_paper/configs/algorithmic_ut.yaml").read_text())
    grid = tmp_path / "grid.yaml"

    def write(overrides, seeds=(0,)):
        grid.write_text(yaml.safe_dump({"name": "fake", "configs": [str(config)], "overrides": overrides,
                                        "seeds": list(seeds), "metrics": ["test/acc"]}))
        return grid
    return fake, write, config, tmp_path / "results"


def test_cache_is_keyed_by_config_and_arguments_code_changes_listed(fake_grid, monkeypatch):
    fake, write, config, results = fake_grid
    grid = write({"a": ["--x=1"], "b": ["--x=2"]})
    assert main([str(grid), "--results", str(results)]) == 0
    assert len(fake.calls) == 2
    assert main([str(grid), "--results", str(results)]) == 0
    assert len(fake.calls) == 2  # unchanged: cached
    write({"a": ["--x=1"], "b": ["--x=3"]})  # same run id "cfg__b__seed0", other override
    main([str(grid), "--results", str(results)])
    assert len(fake.calls) == 3 and "--x=3" in fake.calls[-1]
    config.write_text(config.read_text() + "\n# edited\n")  # the config file's content changed
    main([str(grid), "--results", str(results)])
    assert len(fake.calls) == 5
    monkeypatch.setattr(R, "code_version", lambda: "another-version")  # the code changed
    main([str(grid), "--results", str(results)])
    assert len(fake.calls) == 5  # reused ...
    table = (results / "fake" / "table.md").read_text()
    assert "Runs of an older code version" in table and "cfg__a__seed0" in table.split("older code version")[1]
    main([str(grid), "--results", str(results), "--rerun-code-changes"])
    assert len(fake.calls) == 7  # ... unless asked
    main([str(grid), "--results", str(results)])
    assert len(fake.calls) == 7
    assert "older code version" not in (results / "fake" / "table.md").read_text()
    assert all("--trainer.enable_progress_bar=false" in c for c in fake.calls)  # scripted: no progress bars


def test_a_failed_run_exits_nonzero_and_is_named_in_the_table(fake_grid, capsys):
    fake, write, _, results = fake_grid
    grid = write({"ok": ["--x=1"], "bad": ["--boom=1"]}, seeds=(0, 1))
    assert main([str(grid), "--results", str(results)]) == 1
    table = (results / "fake" / "table.md").read_text()
    assert "2/4 runs finished, 2 FAILED" in table and "`cfg__bad__seed0`" in table and "`cfg__bad__seed1`" in table
    err = capsys.readouterr()
    assert "2/4 runs FAILED" in err.err
    assert {f"{i}/4" for i in range(1, 5)} <= {w for line in err.out.splitlines() for w in line.split()}  # n/N


def test_results_default_outside_committed_folders(fake_grid, monkeypatch):
    fake, write, _, _ = fake_grid
    assert R.DEFAULT_RESULTS == REPO / "outputs" / "ablations"
    assert "outputs/" in (REPO / ".gitignore").read_text().split()
    committed = fake_grid[3] / "committed"
    monkeypatch.setattr(R, "COMMITTED_RESULTS", committed)
    assert main([str(write({"a": []})), "--commit-results"]) == 0
    assert (committed / "fake" / "table.md").is_file()
    assert (committed / "fake" / "runs" / "cfg__a__seed0.json").is_file()


def test_collect_flags_stale_results(fake_grid):
    fake, write, config, results = fake_grid
    grid = write({"a": ["--x=1"]})
    main([str(grid), "--results", str(results)])
    specs = Grid.load(grid).specs()
    assert not R.collect(results / "fake", specs)[0].get("stale")
    config.write_text(config.read_text() + "\n# edited\n")
    assert R.collect(results / "fake", specs)[0]["stale"] is True
    assert R.collect(results / "fake", specs, current_only=True) == []


def test_plot_is_titled_with_the_grids_metric_and_flags_a_constant(tmp_path):
    rows = aggregate([{"config_name": "c", "variant": v, "params": 1, "metrics": {"test": {"acc": a, "zero": 0.0}}}
                      for v, a in (("x", 0.2), ("y", 0.4))], ["test/acc", "test/zero"])
    title = R.plot(rows, "test/acc", tmp_path / "p.png", title="ablation g")
    assert "ablation g" in title and "test/acc" in title and "nothing to compare" not in title
    assert (tmp_path / "p.png").is_file()
    assert "nothing to compare" in R.plot(rows, "test/zero", tmp_path / "z.png", title="ablation g")


def test_grid_plot_metric_must_be_one_of_its_metrics(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("name: x\nconfigs: [experiments/ut_paper/configs/algorithmic_ut.yaml]\nmetrics: [test/a]\n"
                 "plot: test/b\n")
    with pytest.raises(ValueError, match="plot 'test/b' is not one of"):
        Grid.load(p)


def test_result_paths_are_relative_to_the_repository():
    text = f"--config {REPO}/experiments/x.yaml --data.init_args.data_dir={REPO.parent}/shared/data --out {REPO}"
    assert repo_relative(text) == "--config experiments/x.yaml --data.init_args.data_dir=../shared/data --out ."
