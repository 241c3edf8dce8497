"""The WikiSum experiments (Liu et al. 2018 Tables 3-4, the L sweep, the demo): every config loads, every run's
model builds, and each run trains + decodes + scores under fast_dev_run on a tiny data_prep build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.wikisum.experiment import FAST_DEV_RUN, comparison_table, run_experiment
from experiments.wikisum.runner import CONFIG_DIR, deep_merge, load_experiment, model_config_for, run
from tests.experiments.wikisum_fixtures import build_tiny_wikisum
from ut.data.wikisum import WikiSumDataModule
from ut.models import build_model

CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name != "common.yaml")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_wikisum(tmp_path_factory.mktemp("wikisum_exp"), rankers=("identity", "tfidf", "textrank",
                                                                                "sumbasic", "cheating"))


def test_the_four_experiments_exist():
    assert {p.stem for p in CONFIGS} >= {"table3", "table4", "lsweep", "demo"}
    for p in CONFIGS:
        assert (p.parent.parent / f"{p.stem}.py").is_file(), f"no script for {p.name}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_models_build(path, tiny):
    config = load_experiment(path)
    assert config["runs"] and config.get("title")
    for spec in config["runs"]:
        data = {k: v for k, v in spec["data"].items() if k != "data_dir"}
        dm = WikiSumDataModule(str(tiny), **data)
        build_model(spec["model"], model_config_for(spec, dm))  # unknown keys / bad values raise here


def test_sweep_expands_lengths_by_model():
    config = load_experiment(CONFIG_DIR / "lsweep.yaml")
    lengths = {r["data"]["input_length"] for r in config["runs"]}
    assert lengths == {100, 500, 2000, 4000, 11000}
    assert {r["group"] for r in config["runs"]} == {"T-ED", "T-D", "T-DMCA"}
    assert all(r["eval"] is None for r in config["runs"])


def test_unknown_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - {name: x, model: transformer, data: {}, epochs: 3}\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_experiment(bad)


def _one_per_model(runs):
    seen, out = set(), []
    for r in runs:
        key = r.get("group") or r["name"]
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_fast_dev_run(path, tiny, tmp_path):
    for spec in _one_per_model(load_experiment(path)["runs"]):
        spec = deep_merge(spec, {k: v for k, v in FAST_DEV_RUN.items() if k != "eval" or spec.get("eval")})
        row = run(spec, tmp_path, progress=False, data_dir=tiny)
        assert row["status"] == "ok", (spec["name"], row["status"])
        assert row["steps"] == 1 and row["params"] > 0 and row["time_per_step_s"] > 0
        if spec.get("eval"):
            assert 0 <= row["metrics"]["rougeL"] <= 100 and row["metrics"]["log_ppl"] > 0
            assert len(row["samples"]) == 1


@pytest.mark.slow
def test_demo_end_to_end_writes_results_and_report(tiny, tmp_path, capsys):
    """The tiny end-to-end run: a data_prep build, a few steps per model, decode, score, table, report."""
    out = tmp_path / "demo"
    results = run_experiment("demo", ["--data-dir", str(tiny), "--out", str(out), "--max-steps", "2",
                                      "--fast-dev-run", "--no-isolate", "--logger", "none", "--no-progress"])
    printed = capsys.readouterr().out
    assert "ROUGE-L" in printed and "log-ppl" in printed
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["rows"]] == [r["name"] for r in results["rows"]]
    assert all(r["status"] == "ok" for r in saved["rows"]), [r["status"] for r in saved["rows"]]
    report = (out / "report.md").read_text()
    assert "## Results" in report and "## Sample outputs" in report and "learning_curves.png" in report
    assert "T-DMCA" in comparison_table(saved["rows"])


def test_custom_data_dir_is_never_built_implicitly(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep build"):
        run_experiment("demo", ["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert not Path(tmp_path / "none").exists()


@pytest.mark.slow
def test_wandb_offline_run_logs_and_keeps_results(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = deep_merge(load_experiment(CONFIG_DIR / "demo.yaml")["runs"][0], FAST_DEV_RUN)
    row = run(spec, tmp_path, logger="wandb", progress=False, data_dir=tiny)
    assert row["status"] == "ok" and "logger_error" not in row, row.get("logger_error") or row["status"]
    assert list(tmp_path.glob("wandb/offline-run-*")), "no offline W&B run written"
