"""run_lambada (UT paper §3.2 on LAMBADA): setups -> data overrides, and run results -> the paper-shaped table
(fake results: no training)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from experiments.ut_paper import run_lambada


def fake(config, setup, seed, ppl, acc, params=100, **extra):
    return {"config_name": config, "variant": setup, "seed": seed, "params": params, "global_step": 3,
            "metrics": {"test": {"ppl": ppl, "seq_acc": acc, **extra}, "val": {"ppl": ppl + 1, "seq_acc": acc}},
            "machine": "test machine", "command": "python -m experiments.run_training ...", "total_seconds": 60.0,
            "notes": [f"note of {setup}"]}


def args(**kw):
    base = dict(setups=["test_split"], models=["transformer", "ut", "ut_act"], seeds=[0, 1], warmup=5, steps=3,
                train_corpus=None, val_path=None, window=10, eval_passages=30, eval_passages_corpus=None)
    return SimpleNamespace(**{**base, **kw})


def test_table_means_over_seeds_and_orderings(tmp_path):
    results = [fake("lambada_decoder_only", "test_split", 0, 900.0, 0.00),
               fake("lambada_decoder_only", "test_split", 1, 1100.0, 0.02),
               fake("lambada_ut", "test_split", 0, 500.0, 0.05),
               fake("lambada_ut_act", "test_split", 0, 700.0, 0.04, n_updates_decoder=3.5)]
    (tmp_path / "reading.md").write_text("Hand-written reading.\n")
    stats = {"n": 10, "target_unk": 0.25, "target_in_context": 0.8, "random_context_word": 0.0125}
    run_lambada.write_report(results, args(), tmp_path, ["run_lambada", "--steps", "3"],
                             stats_fn=lambda setup, a: stats, train_ppl_fn=lambda r: 100.0 + r["seed"])
    text = (tmp_path / "README.md").read_text()
    assert ("| Transformer | 100 | 2 | 1000 ± 141 | 0.010 ± 0.014 | 1001 ± 141 | 0.010 ± 0.014 | 100 ± 1 | - "
            "| 7321 (0) |") in text
    assert "| UT | 100 | 1 | 500 | 0.050 | 501 | 0.050 | 100 | - | 319 (0.17) |" in text
    assert "| UT+ACT | 100 | 1 | 700 | 0.040 | 701 | 0.040 | 100 | 3.50 | 142 (0.19) |" in text
    assert "UT 500 < UT+ACT 700 < Transformer 1000 (UT leads by 200)" in text
    assert "UT 0.050 > UT+ACT 0.040 > Transformer 0.010 (UT leads by 0.010)" in text
    assert "25.0% are out of the training vocabulary" in text and "80.0% occur in their passage's context" in text
    assert "random context word scores 0.013 accuracy" in text
    assert "note of test_split" in text and "Hand-written reading." in text and "test machine" in text
    assert "NOT the paper's protocol" in text and (tmp_path / "ppl.png").is_file()


def test_train_ppl_reads_the_csv_log(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lambada, "REPO", tmp_path)
    log = tmp_path / "outputs" / "ut_paper_lambada" / "r1" / "csv" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,step,train/nll,val/ppl\n0,1,9.0,\n0,2,1.0,\n0,3,3.0,\n0,3,,50\n")
    assert run_lambada.train_ppl({"run_id": "r1"}, last=2) == pytest.approx(math.exp(2.0))
    assert run_lambada.train_ppl({"run_id": "missing"}) is None


def test_setup_overrides(tmp_path):
    assert run_lambada.setup_overrides("test_split", args()) == ["--data.init_args.protocol=test_split"]
    with pytest.raises(SystemExit, match="--train-corpus"):
        run_lambada.setup_overrides("corpus", args())
    with pytest.raises(SystemExit, match="nope.txt"):
        run_lambada.setup_overrides("corpus", args(train_corpus=str(tmp_path / "nope.txt")))
    corpus = tmp_path / "novels"
    corpus.mkdir()
    over = run_lambada.setup_overrides("corpus", args(train_corpus=str(corpus), val_path="dev.jsonl"))
    assert "--data.init_args.protocol=train_corpus" in over and f"--data.init_args.train_path={corpus}" in over
    assert any(o.startswith("--data.init_args.val_path=") and o.endswith("dev.jsonl") for o in over)
    assert not any("limit" in o for o in over)  # the paper's protocol tests on every passage by default
