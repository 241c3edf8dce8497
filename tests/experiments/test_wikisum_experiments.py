"""The WikiSum experiments (Liu et al. 2018 Tables 3-4, the L sweep, the demo) as one LightningCLI YAML per run:
the committed files are the generator's output, every YAML runs ``fast_dev_run`` through ``ut-train`` on a tiny
data_prep build, the runner and the experiment scripts collect rows, and result files name no absolute path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.wikisum.configs import generate
from experiments.wikisum.runner import REPO_ROOT, overrides_for, rel, run_config
from tests.experiments.wikisum_fixtures import build_tiny_wikisum

CONFIGS = sorted((generate.CONFIG_DIR / e / f"{r.name}.yaml" for e in generate.EXPERIMENTS for r in
                  generate.runs_of(e)), key=str)
# the tiny build's inputs are ~200 tokens: the L sweep's "at least L input tokens" filter is lifted there
TINY = ["--data.init_args.train_min_input_tokens=null"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_wikisum(tmp_path_factory.mktemp("wikisum_exp"), rankers=("identity", "tfidf", "textrank",
                                                                                "sumbasic", "cheating"))


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _no_absolute_paths(record, where):
    for s in _strings(record):
        for word in s.split():
            word = word.split("=", 1)[-1]
            is_path = word.startswith("/") and len(word.strip("/")) > 0  # a lone "/" is prose ("log-ppl / ROUGE-L")
            assert not is_path, f"{where}: absolute path {word!r} in {s[:200]!r}"


def test_committed_configs_are_the_generators_output():
    assert generate.stale_files() == []
    assert subprocess.run([sys.executable, "-m", "experiments.wikisum.configs.generate", "--check"],
                          cwd=REPO_ROOT).returncode == 0


def test_stale_or_extra_config_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(generate, "RUNS", [generate.Run("demo", "T-ED L=500", "T-ED")])
    monkeypatch.setattr(generate.Run, "path", property(lambda r: tmp_path / r.experiment / f"{r.name}.yaml"))
    monkeypatch.setattr(generate, "render", lambda run: "x: 1\n")
    assert generate.stale_files() == ["demo/t_ed_l500.yaml"]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "t_ed_l500.yaml").write_text("x: 1\n")
    (tmp_path / "demo" / "old.yaml").write_text("x: 2\n")
    assert generate.stale_files() == ["demo/old.yaml (not generated)"]


def test_one_yaml_per_run_of_every_experiment():
    names = {p.relative_to(generate.CONFIG_DIR).as_posix() for p in CONFIGS}
    assert "table4/t_dmca_l11000.yaml" in names and "table3/t_ed_cheating.yaml" in names
    assert {n.split("/")[0] for n in names} == set(generate.EXPERIMENTS)
    assert len([n for n in names if n.startswith("lsweep/")]) == 15  # {T-ED, T-D, T-DMCA} x 5 lengths
    assert len(names) == len(generate.RUNS)
    for e in ("table3", "table4", "lsweep"):
        assert (REPO_ROOT / "experiments" / "wikisum" / f"{e}.py").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_picks_the_machine_and_never_hard_codes_bf16(path):
    cfg = yaml.safe_load(path.read_text())
    trainer = cfg["trainer"]
    assert trainer["accelerator"] == "auto" and trainer["strategy"] == "auto"
    assert trainer["precision"] == "auto"  # bf16 only where native (ut.precision), never hard-coded
    assert cfg["data"]["init_args"]["data_dir"] == "data/wikisum_sample"  # relative to the repository root
    assert any(c["class_path"].endswith("RunRecordCallback") for c in trainer["callbacks"])
    assert f"--config {rel(path)}" in path.read_text()  # the header names the command that runs it


def test_recorded_commands_have_no_absolute_paths():
    from experiments.wikisum.runner import relative_argv

    argv = ["--data-dir", str(REPO_ROOT / "data" / "b"), f"--out={REPO_ROOT}/o", "--steps", "4", "/tmp/x"]
    assert relative_argv(argv)[:5] == ["--data-dir", "data/b", "--out=o", "--steps", "4"]
    assert not relative_argv(argv)[5].startswith("/")


def test_scripted_overrides():
    cfg = yaml.safe_load((generate.CONFIG_DIR / "lsweep" / "t_d_l2000.yaml").read_text())
    ov = overrides_for(cfg, data_dir=REPO_ROOT / "data" / "x", max_steps=5, logger="none")
    assert "--trainer.enable_progress_bar=false" in ov and "--run.logger=none" in ov
    assert "--data.init_args.data_dir=data/x" in ov  # relative to the repository root
    assert "--trainer.max_steps=5" in ov and "--trainer.val_check_interval=5" in ov  # a log-ppl point at the end
    assert not any("val_check" in o for o in overrides_for(cfg, max_steps=1000))


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_config_runs_fast_dev_run_through_ut_train(path, tiny, tmp_path):
    """``ut-train fit --config <run>.yaml --trainer.fast_dev_run true`` on the tiny build (in this process)."""
    from ut.cli import cli_main

    cli = cli_main(["fit", "--config", str(path), f"--data.init_args.data_dir={tiny}", "--trainer.fast_dev_run=true",
                    f"--run.save_dir={tmp_path}", "--run.logger=csv", "--trainer.enable_progress_bar=false", *TINY])
    assert cli.trainer.global_step == 1
    run_dir = Path(cli.trainer.default_root_dir)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["steps"] == 1 and record["params"] > 0 and record["time_per_step_s"] > 0
    assert record["precision"] in ("32-true", "bf16-mixed") and record["precision_reason"]
    if any(c["class_path"].endswith("SummarizationEvalCallback")
           for c in yaml.safe_load(path.read_text())["trainer"]["callbacks"]):
        ev = json.loads((run_dir / "summarization_eval.json").read_text())
        assert 0 <= ev["metrics"]["rougeL"] <= 100 and ev["metrics"]["log_ppl"] > 0 and len(ev["samples"]) == 1


@pytest.mark.slow
def test_ut_train_command_line_fits_wikisum(tiny, tmp_path):
    """The installed entry point (``python -m ut.cli``) fits a WikiSum config: the batch-sampler DataModule and the
    CLI's resumable-order callback together."""
    config = generate.CONFIG_DIR / "demo" / "t_dmca_l1000.yaml"
    proc = subprocess.run([sys.executable, "-m", "ut.cli", "fit", "--config", str(config), "--trainer.max_steps=3",
                           "--trainer.val_check_interval=3", f"--data.init_args.data_dir={tiny}",
                           f"--run.save_dir={tmp_path}", "--run.logger=csv", "--trainer.enable_progress_bar=false"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert list(tmp_path.rglob("checkpoints/last.ckpt"))


@pytest.mark.slow
def test_runner_row_is_complete_and_relative(tiny, tmp_path):
    config = generate.CONFIG_DIR / "demo" / "ut_act_l500.yaml"
    cfg = yaml.safe_load(config.read_text())
    row = run_config(config, tmp_path / "runs", overrides_for(cfg, tiny, max_steps=4, logger="csv"))
    assert row["status"] == "ok", row.get("error")
    assert row["name"] == "UT ACT L=500" and row["group"] == "UT ACT" and row["steps"] == 4
    assert [s for s, _ in row["val_curve"]] == [4] and row["val_curve"][0][1] > 0
    assert len(row["curve"]) == 4 and row["metrics"]["log_ppl"] > 0 and row["samples"]
    assert row["command"].startswith("ut-train fit --config experiments/wikisum/configs/demo/ut_act_l500.yaml")
    names = {Path(f).name.rsplit("_step", 1)[0] for f in row["figures"]}
    assert {"val_attention_encoder_example0", "val_ponder_map_encoder"} <= names, names
    _no_absolute_paths(row, "row")


@pytest.mark.slow
def test_a_failing_run_is_a_row_with_its_reason(tiny, tmp_path):
    config = generate.CONFIG_DIR / "lsweep" / "t_ed_l11000.yaml"  # >= 11000 input tokens: none in the tiny build
    row = run_config(config, tmp_path, overrides_for(yaml.safe_load(config.read_text()), tiny, max_steps=1),
                     log=False)
    assert row["status"].startswith("failed") and "11000" in row["error"]


@pytest.mark.slow
def test_experiment_script_writes_relative_results_and_report(tiny, tmp_path, capsys):
    from experiments.wikisum.experiment import run_experiment

    out = tmp_path / "table3"
    results = run_experiment("table3", ["--data-dir", str(tiny), "--out", str(out), "--save-dir",
                                        str(tmp_path / "runs"), "--fast-dev-run", "--only", "t_ed_tf_idf"])
    assert "ROUGE-L" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["T-ED tf-idf"] == [r["name"] for r in results["rows"]]
    assert saved["rows"][0]["status"] == "ok"
    assert saved["command"].startswith("python -m experiments.wikisum.table3")
    _no_absolute_paths(saved, "results.json")
    report = (out / "report.md").read_text()
    assert "## Results" in report and "ut-train fit --config experiments/wikisum/configs/table3/" in report


@pytest.mark.slow
def test_demo_end_to_end_on_the_tiny_build(tiny, tmp_path, capsys):
    from experiments.demo import main

    out = tmp_path / "demo"
    assert main(["--data-dir", str(tiny), "--out", str(out), "--steps", "4", "--ut-steps", "2", "--scaling-lengths",
                 "500", "--", *TINY]) == 0
    printed = capsys.readouterr().out
    # the tiny build has no extractive evaluation (eval_lengths=()): the demo says so instead of a table
    for part in ("1. Extractive ranking", "without --eval-lengths", "2. WikiSum models at equal steps", "T-DMCA L=1000",
                 "3. L-scaling", "4. Universal Transformer vs Transformer", "Generated samples (NOT summaries"):
        assert part in printed, part
    report = (out / "report.md").read_text()
    assert "learning_curves.png" in report and (out / "learning_curves.png").is_file()
    assert "l_scaling.png" not in report  # one L only: no scaling plot, and no link to a missing one
    saved = json.loads((out / "results.json").read_text())
    assert all(r["status"] == "ok" for r in saved["rows"]), [(r["name"], r["status"]) for r in saved["rows"]]
    models = [r for r in saved["rows"] if r["config"].startswith("experiments/wikisum/configs/demo/")]
    assert len(models) == 3 and all(r["steps"] == 4 for r in models)
    assert {len(r["val_curve"]) for r in models} == {4}  # validation every steps // 5 = 1 step
    _no_absolute_paths(saved, "demo results.json")
    (out / "report.md").unlink()
    assert main(["--out", str(out), "--report-only"]) == 0  # the report again from the saved results
    assert report == (out / "report.md").read_text() and saved == json.loads((out / "results.json").read_text())


def test_custom_data_dir_is_never_built_implicitly(tmp_path):
    from experiments.wikisum.experiment import run_experiment

    with pytest.raises(FileNotFoundError, match="python -m data_prep build"):
        run_experiment("table3", ["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert not Path(tmp_path / "none").exists()


def test_demo_prints_the_builds_extractive_table(tmp_path):
    from experiments.wikisum.demo import extractive_table

    assert "without --eval-lengths" in extractive_table(tmp_path)
    (tmp_path / "extractive_rouge.md").write_text("| ranker | ROUGE-L |\n|---|---|\n| tfidf | 14.2 |\n")
    assert extractive_table(tmp_path).splitlines()[2] == "| tfidf | 14.2 |"
