"""The UT paper comparison scripts turn run results into paper-shaped tables (fake results: no training)."""

from __future__ import annotations

from types import SimpleNamespace

from experiments.ut_paper import run_algorithmic, run_babi


def fake(config, variant, metrics, params=100):
    return {"config_name": config, "variant": variant, "seed": 0, "params": params, "metrics": {"test": metrics},
            "machine": "test machine", "command": "python -m experiments.run_training ...", "total_seconds": 1.0,
            "notes": []}


def test_algorithmic_table(tmp_path):
    results = [fake("algorithmic_transformer", "copy", {"token_acc": 0.5, "seq_acc": 0.0}),
               fake("algorithmic_ut", "copy", {"token_acc": 0.9, "seq_acc": 0.25}),
               fake("algorithmic_ut_act", "copy", {"token_acc": 0.8, "seq_acc": 0.1, "ponder_encoder": 2.5})]
    args = SimpleNamespace(tasks=["copy"], models=["transformer", "ut", "ut_act"], test_size=8, d_model=16, steps=3,
                           batch_size=4, seeds=[0])
    run_algorithmic.write_report(results, args, tmp_path, ["run_algorithmic", "--steps", "3"])
    text = (tmp_path / "README.md").read_text()
    assert "| copy | 0.50 / 0.00 | 0.90 / 0.25 | 0.80 / 0.10 | 0.53 / 0.03 | 0.91 / 0.35 |" in text
    assert "test machine" in text and (tmp_path / "char_acc.png").is_file()
    assert "copy, char-acc on length 400: UT 0.90 > UT+ACT 0.80 > Transformer 0.50 (UT leads by 0.10)" in text
    assert "copy, char-acc on training lengths (<= 40): n/a" in text  # no in-distribution metrics in these fakes


def test_babi_table_counts_failed_tasks(tmp_path):
    results = [fake("babi_1k_transformer", "task1", {"error": 0.30}),
               fake("babi_1k_transformer", "task2", {"error": 0.02}),
               fake("babi_1k_ut_act", "task1", {"error": 0.04, "ponder_encoder": 2.0}),
               fake("babi_1k_ut_act", "task2", {"error": 0.10, "ponder_encoder": 3.0})]
    args = SimpleNamespace(tasks=[1, 2], models=["transformer", "ut_act"], subset="en", steps=3, seeds=[0])
    run_babi.write_report(results, args, tmp_path, ["run_babi"])
    text = (tmp_path / "README.md").read_text()
    assert "| Transformer | 16.0 (1/2) | 30.0 | 2.0 | 21.8 (5/20) |" in text
    assert "| UT+ACT | 7.0 (1/2) | 4.0 | 10.0 | 4.55 (3/20) |" in text
    assert "task 1: 2.00, task 2: 3.00" in text
    assert "task 1: UT+ACT 4.0 < Transformer 30.0 (UT+ACT leads by 26.0)" in text
    assert "average over these tasks: UT+ACT 7.0 < Transformer 16.0 (UT+ACT leads by 9.0)" in text


def test_ranking_ties_and_missing():
    from experiments.ut_paper.report import ranking

    assert ranking({"A": 0.50, "B": 0.505, "C": None}, tie=0.01) == "B 0.51 > A 0.50 (B and A tie within 0.01)"
    assert ranking({"A": None}) == "n/a"
