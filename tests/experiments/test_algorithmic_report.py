"""The algorithmic table of experiments/ut_paper/run_algorithmic.py: paper columns beside ours, mean and best over
seeds, the three test sets, computed orderings, the in-distribution check, steps parsing, seed-0-first order."""

from types import SimpleNamespace

import pytest

from experiments.ut_paper import run_algorithmic


def fake(config, variant, seed, **stages):
    return {"config_name": config, "variant": variant, "seed": seed, "params": 100, "metrics": stages,
            "machine": "test machine", "command": "python -m experiments.run_training ...", "total_seconds": 60.0,
            "eval_seconds": {"test_le40": 6.0}, "notes": []}


def acc(char, seq, **extra):
    return {"token_acc": char, "seq_acc": seq, "decoded_token_acc": char - 0.1, "decoded_seq_acc": seq, **extra}


def args(**kw):
    base = dict(tasks=["copy"], models=["transformer", "ut", "ut_act"], seeds=[0, 1], steps={"copy": 3}, d_model=16,
                batch_size=4, peak_lr=3e-3, warmup=2, n_400=8, n_uniform=8, n_le40=8, eval_batch_size=8, decode=True)
    return SimpleNamespace(**{**base, **kw})


def test_algorithmic_table(tmp_path):
    results = [fake("algorithmic_transformer", "copy", 0, test=acc(0.5, 0.0), test_le40=acc(0.95, 0.5),
                    test_uniform400=acc(0.6, 0.1)),
               fake("algorithmic_transformer", "copy", 1, test=acc(0.3, 0.0), test_le40=acc(0.85, 0.3),
                    test_uniform400=acc(0.4, 0.1)),
               fake("algorithmic_ut", "copy", 0, test=acc(0.9, 0.25), test_le40=acc(1.0, 1.0),
                    test_uniform400=acc(0.9, 0.5)),
               fake("algorithmic_ut_act", "copy", 0, test=acc(0.8, 0.1, ponder_encoder=2.5),
                    test_le40=acc(1.0, 1.0, ponder_encoder=2.2, ponder_decoder=3.0), test_uniform400=acc(0.85, 0.4))]
    run_algorithmic.write_report(results, args(), tmp_path, ["run_algorithmic", "--seeds", "0", "1"])
    text = (tmp_path / "README.md").read_text()
    # mean (best) over the two Transformer seeds; the paper beside ours
    assert "| copy | Transformer | 2 | 0.90 / 0.40 (0.95 / 0.50) | 0.40 / 0.00 (0.50 / 0.00) | 0.50 / 0.10 (0.60 / " \
           "0.10) | 0.53 / 0.03 |" in text
    assert "| copy | UT | 1 | 1.00 / 1.00 | 0.90 / 0.25 | 0.90 / 0.50 | 0.91 / 0.35 |" in text
    assert "| copy | UT+ACT | 1 | 1.00 / 1.00 | 0.80 / 0.10 | 0.85 / 0.40 | n/a |" in text
    assert "| copy | Transformer | 0.80 / 0.40 (0.85 / 0.50) |" in text  # greedy-decoded table
    assert "copy, char-acc, len = 400: UT 0.90 > UT+ACT 0.80 > Transformer 0.40 (UT leads by 0.10)" in text
    assert "copy, char-acc, len <= 40 (train dist.): UT+ACT 1.00 > UT 1.00 > Transformer 0.90" in text
    assert "NOT LEARNED: Transformer on copy, seed 1: char-acc 0.85 on len <= 40" in text
    assert "seed 0: char-acc 0.95" not in text
    assert "4/6 runs finished" in text and "test machine" in text and (tmp_path / "accuracy.png").is_file()
    assert "encoder 2.20, decoder 3.00" in text


def test_missing_metrics_read_na(tmp_path):
    results = [fake("algorithmic_ut", "copy", 0, test=acc(0.9, 0.25))]
    run_algorithmic.write_report(results, args(seeds=[0]), tmp_path, ["run_algorithmic"])
    text = (tmp_path / "README.md").read_text()
    assert "| copy | UT | 1 | n/a | 0.90 / 0.25 | n/a | 0.91 / 0.35 |" in text
    assert "copy, char-acc, len <= 40 (train dist.): n/a" in text


def test_steps_parsing_and_seed_zero_first():
    assert run_algorithmic.parse_steps(["reverse=900"])["reverse"] == 900
    with pytest.raises(SystemExit, match="TASK=N"):
        run_algorithmic.parse_steps(["sort=3"])
    a = args(tasks=["copy", "reverse"], seeds=[0, 1], steps={"copy": 5, "reverse": 7}, logger="csv")
    specs = run_algorithmic.build_specs(a)
    assert [s.seed for s in specs] == [0] * 6 + [1] * 6
    assert specs[0].run_id == "algorithmic_transformer__copy__seed0"
    assert "--trainer.max_steps=7" in specs[3].args and "--model.init_args.optimizer.warmup_steps=2" in specs[3].args
    # the fixed warmup keeps the peak lr: c * d^-0.5 * w^-0.5 = peak_lr whatever the steps
    scale = float(next(x for x in specs[0].args if "lr_scale" in x).split("=")[1])
    assert scale * 16**-0.5 * 2**-0.5 == pytest.approx(3e-3, rel=1e-3)


def test_start0_variant_differs_from_the_ut_config_only_in_the_position_policy():
    """"UT, start 0" is the table's UT config with positions from 0 at every step, nothing else changed."""
    import yaml

    root = run_algorithmic.HERE / "configs"
    ut = yaml.safe_load((root / "algorithmic_ut.yaml").read_text())
    start0 = yaml.safe_load((root / "algorithmic_ut_start0.yaml").read_text())
    assert ut["model"]["init_args"]["model_config"].pop("position_start_index") == "random"
    assert start0["model"]["init_args"]["model_config"].pop("position_start_index") == "zero"
    assert ut == start0
    specs = run_algorithmic.build_specs(args(models=run_algorithmic.DEFAULT_MODELS, seeds=[0], logger="csv"))
    assert [s.config for s in specs] == [f"experiments/ut_paper/configs/algorithmic_{m}.yaml"
                                         for m in ("transformer", "ut", "ut_start0")]
    assert all((run_algorithmic.HERE.parents[1] / s.config).is_file() for s in specs)
