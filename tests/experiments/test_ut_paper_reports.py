"""The UT paper comparison scripts turn run results into paper-shaped tables (fake results: no training)."""

from __future__ import annotations

from types import SimpleNamespace

from experiments.ut_paper import run_babi


def fake(config, variant, metrics, params=100):
    return {"config_name": config, "variant": variant, "seed": 0, "params": params, "metrics": {"test": metrics},
            "machine": "test machine", "command": "python -m experiments.run_training ...", "total_seconds": 1.0,
            "notes": []}


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
