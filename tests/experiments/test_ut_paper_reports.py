"""The UT paper comparison scripts turn run results into paper-shaped tables (fake results: no training)."""

from __future__ import annotations

from types import SimpleNamespace

from experiments.ut_paper import run_babi


def fake(config, variant, metrics, params=100):
    return {"config_name": config, "variant": variant, "seed": 0, "params": params, "metrics": {"test": metrics},
            "machine": "test machine", "command": "python -m experiments.run_training ...", "total_seconds": 1.0,
            "notes": []}


def babi_fake(model, task, seed, error, ponder=None):
    m = {f"error_task{task}": error, "error": error}
    if ponder is not None:
        m[f"ponder_task{task}"] = ponder
    r = fake(f"babi_1k_{model}", f"task{task}", {**m})
    r["metrics"]["val"] = {f"error_task{task}": error / 2}
    return {**r, "seed": seed, "run_id": f"babi_1k_{model}__task{task}__seed{seed}", "global_step": 3}


def test_babi_table_counts_failed_tasks_best_and_mean_over_seeds(tmp_path):
    results = [babi_fake("transformer", 1, 0, 0.30), babi_fake("transformer", 1, 1, 0.50),
               babi_fake("transformer", 2, 0, 0.02), babi_fake("transformer", 2, 1, 0.08),
               babi_fake("ut_act", 1, 0, 0.04, 2.0), babi_fake("ut_act", 1, 1, 0.02, 2.4),
               babi_fake("ut_act", 2, 0, 0.10, 3.0), babi_fake("ut_act", 2, 1, 0.20, 3.2)]
    args = SimpleNamespace(table="1k", tasks=[1, 2], models=["transformer", "ut_act"], seeds=[0, 1])
    specs = run_babi.build_specs("1k", [1, 2], ["transformer", "ut_act"], [0, 1], [])
    assert [s.seed for s in specs] == [0, 0, 0, 0, 1, 1, 1, 1]  # seed 0 of every task and model first
    run_babi.write_report(results, args, tmp_path, ["run_babi"], specs, outputs=tmp_path / "no_outputs")
    text = (tmp_path / "README.md").read_text()
    assert "| 1 | 30.0 | 2.0 | 40.0 | 3.0 | 2/2 |" in text  # best, then mean over seeds
    assert "| 2 | 2.0 | 10.0 | 5.0 | 15.0 | 2/2 |" in text
    # best of seeds: Transformer (30 + 2) / 2 = 16.0 with 1 failed task; UT+ACT (2 + 10) / 2 = 6.0, 1 failed
    assert "| Transformer | 16.00 (1/2) | 22.50 (1/2) |" in text and "| 21.8 (5/20) | n/a |" in text
    assert "| UT+ACT | 6.00 (1/2) | 9.00 (1/2) |" in text and "| 4.55 (3/20) | 6.34 |" in text
    assert "task 1: 2.20 (paper 2.3), task 2: 3.10 (paper 3.1)" in text
    assert "average test error %, best of seeds: UT+ACT 6.00 < Transformer 16.00 (UT+ACT leads by 10.00)" in text
    assert "| 1 | n/a | n/a | 20.0 | 1.5 |" in text  # in-distribution: no train logs here, val = error / 2
    assert "8/8 runs finished" in text and (tmp_path / "error.png").is_file()
    assert "no checkpoints of finished runs" in text


def test_ranking_ties_and_missing():
    from experiments.ut_paper.report import ranking

    assert ranking({"A": 0.50, "B": 0.505, "C": None}, tie=0.01) == "B 0.51 > A 0.50 (B and A tie within 0.01)"
    assert ranking({"A": None}) == "n/a"


def test_babi_steps_per_task_defaults_and_overrides():
    default = run_babi.parse_steps([], "1k")
    assert default == run_babi.TASK_STEPS["1k"] and default[2] == 3000
    specs = run_babi.build_specs("1k", [1, 2], ["ut"], [0], ["--run.logger=csv"], default)
    # a task without a per-task budget keeps the config's steps, so its arguments (the cache key) are unchanged
    assert specs[0].args == ("--run.logger=csv", "--data.init_args.tasks=1", "--seed_everything=0")
    assert "--trainer.max_steps=3000" in specs[1].args and "--trainer.val_check_interval=3000" in specs[1].args
    assert run_babi.parse_steps(["500"], "1k") == {"all": 500}  # a plain N replaces every per-task budget
    assert run_babi.parse_steps(["500", "2=40"], "10k") == {"all": 500, 2: 40}
    ten_k = run_babi.build_specs("10k", [1, 2], ["ut"], [0], [], run_babi.parse_steps([], "10k"))
    assert not any(a.startswith("--trainer.max_steps") for a in ten_k[0].args)  # task 1: the config's 3000
    assert "--trainer.max_steps=9000" in ten_k[1].args  # task 2: run_babi.TASK_STEPS["10k"]
    assert set(run_babi.TASK_STEPS) <= set(run_babi.BUDGET_WHY)  # every per-task budget says why in the report
    joint = run_babi.build_specs("1k_joint", [1], ["ut"], [0], [], {"all": 7})
    assert "--trainer.max_steps=7" in joint[0].args
    import pytest

    with pytest.raises(SystemExit, match="TASK=N"):
        run_babi.parse_steps(["x=3"], "1k")


def test_provenance_names_runs_of_another_code_version():
    from experiments.ut_paper.report import code_versions

    runs = [{"run_id": f"r{i}", "code_version": "aaaa"} for i in range(3)] + [{"run_id": "old", "code_version": "bbbb"}]
    line = code_versions(runs)
    assert "3 runs at `aaaa`" in line and "1 at another" in line and line.rstrip().endswith("old")
    assert code_versions(runs[:3]) == ""
