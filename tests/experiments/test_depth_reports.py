"""experiments/depth/run_halting.py and run_test_time_depth.py: the spec building (seeds, the cache keys differ per
mechanism, both scripts build the same runs), the halting configs (the ACT ones but for the halting lines; the
PonderNet prior's mean that they state), the test-time settings, the resumable sweep (settings really applied,
nothing redone), and both reports written from fake results (tables, computed orderings and answers, plots)."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
import yaml

from experiments.ablations.runner import REPO, RunSpec, cache_key
from experiments.depth import evaluation, knobs, run_halting, run_test_time_depth
from ut.models import build_model
from ut.nn.pondernet import truncated_geometric_log_prior

CONFIGS = REPO / "experiments" / "ut_paper" / "configs"
MC = {"d_model": 64, "d_ff": 256, "tgt_vocab_size": 16}  # the copy models' config (FLOPs)


# ------------------------------------------------------------------------------------------------------ specs
def test_specs_seed_major_with_a_distinct_cache_key_per_mechanism():
    args = run_halting.parser().parse_args([])
    specs = run_halting.build_specs(args)
    n = len(run_halting.MECHANISMS) * len(run_halting.TASKS)
    assert len(specs) == n * 3 == 5 * 4 * 3
    assert [s.seed for s in specs] == [0] * n + [1] * n + [2] * n
    assert all((REPO / s.config).is_file() for s in specs)
    assert len({cache_key(s) for s in specs}) == len(specs)
    assert len({s.run_id for s in specs}) == len(specs)
    for task in run_halting.TASKS:
        seed0 = [s for s in specs if s.variant == task and s.seed == 0]
        assert sorted(run_halting.mechanism_of(s.run_id.split("__")[0]) for s in seed0) == sorted(
            run_halting.MECHANISMS)
    by_id = {s.run_id: s for s in specs}
    assert "--trainer.max_steps=1000" in by_id["algorithmic_ut_pondernet__copy__seed0"].args
    assert "--trainer.max_steps=3000" in by_id["babi_1k_ut_act__task2__seed1"].args  # run_babi.TASK_STEPS
    assert not any(a.startswith("--trainer.max_steps") for a in by_id["babi_1k_ut__task1__seed0"].args)
    assert "--seed_everything=2" in by_id["babi_1k_ut_stick_breaking__task3__seed2"].args
    quick = run_halting.build_specs(run_halting.parser().parse_args(
        ["--tasks", "copy", "--seeds", "5", "--copy-steps", "7", "--babi-steps", "9"]))
    assert [s.run_id for s in quick] == [f"algorithmic_{m}__copy__seed5" for m in run_halting.MECHANISMS]
    assert all("--trainer.max_steps=7" in s.args for s in quick)
    zero = run_halting.build_specs(run_halting.parser().parse_args(
        ["--tasks", "copy", "task1", "--seeds", "0", "--copy-position-start", "zero"]))
    start = "--model.init_args.model_config.position_start_index=zero"
    assert [start in s.args for s in zero] == [True] * 5 + [False] * 5
    assert {cache_key(s) for s in zero[:5]}.isdisjoint(cache_key(s) for s in specs)


def test_the_zero_start_copy_runs_keep_their_checkpoints_apart(tmp_path):
    """Same run ids, other cache keys: the two copy position policies write checkpoints to different folders."""
    default = run_halting.parser().parse_args([])
    zero = run_halting.parser().parse_args(["--copy-position-start", "zero"])
    assert run_halting.experiment_for(default) == run_halting.EXPERIMENT
    assert run_halting.experiment_for(zero) != run_halting.EXPERIMENT
    result = {"run_id": "algorithmic_ut__copy__seed0", "model_name": "universal", "seed": 0}
    paths = {evaluation.checkpoint_path(result, run_halting.experiment_for(a), tmp_path) for a in (default, zero)}
    assert len(paths) == 2
    assert run_halting.experiment_for(run_test_time_depth.parser().parse_args(
        ["--copy-position-start", "zero"])) == run_halting.experiment_for(zero)


def test_the_sparse_copy_ut_gets_experts_of_the_dense_width_over_top_k(tmp_path):
    """run_algorithmic's specs set d_ff = 4 d_model for every model; the sparse UT's experts get it / moe_top_k
    (the last override wins), so that its active transition equals the dense UT's; bAbI keeps its config's."""
    specs = run_halting.build_specs(run_halting.parser().parse_args(["--seeds", "0", "--d-model", "32"]))
    by_id = {s.run_id: s for s in specs}
    d_ff = [a for a in by_id["algorithmic_ut_moe__copy__seed0"].args if "d_ff=" in a]
    assert d_ff == ["--model.init_args.model_config.d_ff=128", "--model.init_args.model_config.d_ff=64"]
    assert [a for a in by_id["algorithmic_ut__copy__seed0"].args if "d_ff=" in a] == [
        "--model.init_args.model_config.d_ff=128"]
    assert not any("d_ff=" in a for a in by_id["babi_1k_ut_moe__task1__seed0"].args)
    three = yaml.safe_load((CONFIGS / "algorithmic_ut_moe.yaml").read_text())
    three["model"]["init_args"]["model_config"]["moe_top_k"] = 3
    (tmp_path / "algorithmic_ut_moe.yaml").write_text(yaml.safe_dump(three))
    with pytest.raises(ValueError, match="not divisible by moe_top_k = 3"):
        run_halting.sparse_width(RunSpec(str(tmp_path / "algorithmic_ut_moe.yaml"), "copy", 0), 32)


@pytest.mark.parametrize("family,dense_d_ff", [("algorithmic", 256), ("babi_1k", 128)])
def test_the_sparse_ut_configs_are_the_dense_ones_but_for_the_moe_lines_at_equal_active_flops(family, dense_d_ff):
    from benchmarks.flops import matching_dense_d_ff, universal_flops_per_token
    from ut.models.universal import UniversalTransformerConfig

    dense = yaml.safe_load((CONFIGS / f"{family}_ut.yaml").read_text())
    sparse = yaml.safe_load((CONFIGS / f"{family}_ut_moe.yaml").read_text())
    d_mc, s_mc = dense["model"]["init_args"]["model_config"], sparse["model"]["init_args"]["model_config"]
    assert d_mc.pop("transition") == "ffn" and s_mc.pop("transition") == "moe"
    moe = {k: s_mc.pop(k) for k in list(s_mc) if k.startswith("moe_") or k == "n_experts"}
    assert moe == {"n_experts": 8, "moe_top_k": 2, "moe_capacity_factor": 1.25, "moe_aux_loss_weight": 0.01,
                   "moe_balance": "importance"}
    assert d_mc.pop("d_ff") == dense_d_ff and s_mc.pop("d_ff") == dense_d_ff // 2
    assert dense == sparse
    common = {"d_model": 64, "n_heads": 4, "n_steps": 4}
    dense_cfg = UniversalTransformerConfig(**common, d_ff=dense_d_ff)
    sparse_cfg = UniversalTransformerConfig(**common, d_ff=dense_d_ff // 2, transition="moe", **moe)
    assert matching_dense_d_ff(sparse_cfg) == dense_d_ff
    extra = universal_flops_per_token(sparse_cfg, 40) - universal_flops_per_token(dense_cfg, 40)
    assert extra == 2 * 4 * 64 * 8  # only the router's d * n_experts multiply-adds per token and step


@pytest.mark.parametrize("argv", [[], ["--no-decode", "--tasks", "copy", "task2", "--seeds", "0"]])
def test_the_test_time_depth_script_builds_the_halting_table_runs(argv):
    """run_test_time_depth trains missing runs through run_halting's cache: the same runs, the same keys."""
    a = run_halting.build_specs(run_halting.parser().parse_args(argv))
    b = run_halting.build_specs(run_test_time_depth.parser().parse_args([*argv, "--sweep-decode"]))
    assert a == b and [cache_key(s) for s in a] == [cache_key(s) for s in b]


def test_flops_count_the_sparse_uts_active_experts_and_router():
    sparse = {**MC, "d_ff": 128, "transition": "moe", "n_experts": 8, "moe_top_k": 2}
    assert evaluation.transition_width(MC) == 256
    assert evaluation.transition_width(sparse) == 2 * 128 + 8 / 2
    m = copy_metrics(0.9, 0.5, 4, 4, 200.0)
    dense, moe = evaluation.copy_flops(MC, m), evaluation.copy_flops(sparse, m)
    src, tgt = m["mean_src_len"], m["mean_tgt_len"]
    router = 2 * 64 * 8 * (4 * src + 4 * tgt)  # FLOPs: 2 per multiply-add, d * E per token and step, both stacks
    assert moe - dense == pytest.approx(router / tgt)
    b = babi_metrics(0, 0, 0, 4.0)
    assert evaluation.babi_flops({"d_model": 64, "d_ff": 64, "transition": "moe", "n_experts": 8, "moe_top_k": 2},
                                 b) - evaluation.babi_flops({"d_model": 64, "d_ff": 128}, b) == pytest.approx(
        2 * 4 * 64 * 8)


def test_mechanism_of():
    assert run_halting.mechanism_of("babi_1k_ut_stick_breaking") == "ut_stick_breaking"
    assert run_halting.mechanism_of("algorithmic_ut") == "ut"
    assert run_halting.mechanism_of("algorithmic_ut_act") == "ut_act"
    assert run_halting.mechanism_of("babi_1k_ut_moe") == "ut_moe"
    with pytest.raises(ValueError, match="halting mechanism"):
        run_halting.mechanism_of("algorithmic_transformer")


@pytest.mark.parametrize("family", ["algorithmic", "babi_1k"])
@pytest.mark.parametrize("mechanism,prefix", [("pondernet", "pondernet_"), ("stick_breaking", "stick_breaking_")])
def test_the_halting_configs_are_the_act_ones_but_for_the_halting_lines(family, mechanism, prefix):
    act = yaml.safe_load((CONFIGS / f"{family}_ut_act.yaml").read_text())
    new = yaml.safe_load((CONFIGS / f"{family}_ut_{mechanism}.yaml").read_text())
    act_mc, new_mc = act["model"]["init_args"]["model_config"], new["model"]["init_args"]["model_config"]
    assert new_mc.pop("recurrence") == mechanism and act_mc.pop("recurrence") == "act"
    assert new_mc.pop("act_max_steps") == act_mc.pop("act_max_steps") == 8
    halting = {k: new_mc.pop(k) for k in list(new_mc) if k.startswith(prefix)}
    for k in [k for k in act_mc if k.startswith("act_")]:
        act_mc.pop(k)
    assert act == new
    expected = ({"pondernet_lambda_p": 0.2, "pondernet_beta": 0.01, "pondernet_eval_halting": "threshold",
                 "pondernet_threshold": 0.5} if mechanism == "pondernet" else
                {"stick_breaking_threshold": 0.999, "stick_breaking_loss_weight": 0.01})
    assert halting == expected


@pytest.mark.parametrize("family", ["algorithmic", "babi_1k"])
def test_the_pondernet_configs_state_the_truncated_priors_mean(family):
    """The comment of pondernet_lambda_p gives the prior's mean truncated at act_max_steps (not 1 / lambda_p)."""
    path = CONFIGS / f"{family}_ut_pondernet.yaml"
    mc = yaml.safe_load(path.read_text())["model"]["init_args"]["model_config"]
    line = next(x for x in path.read_text().splitlines() if x.strip().startswith("pondernet_lambda_p:"))
    found = re.search(r"truncated at act_max_steps = (\d+): prior mean ([\d.]+) steps", line)
    assert found, line
    n_steps, stated = int(found[1]), float(found[2])
    assert n_steps == mc["act_max_steps"]
    prior = truncated_geometric_log_prior(mc["pondernet_lambda_p"], n_steps).exp()
    mean = float((torch.arange(1, n_steps + 1, dtype=torch.float64) * prior).sum())
    assert stated == round(mean, 2) == 3.39


# ---------------------------------------------------------------------------------------------------- settings
def test_settings_for_each_mechanism():
    fixed = run_test_time_depth.settings_for("ut", {"n_steps": 4})
    assert [s["n_steps"] for s in fixed] == [2, 4, 8, 12, 16]
    assert run_test_time_depth.settings_for("ut_moe", {"n_steps": 4}) == fixed  # the sparse UT: fixed depth
    act = run_test_time_depth.settings_for("ut_act", {"threshold": 0.99, "max_steps": 8})
    assert [(s["threshold"], s["max_steps"]) for s in act] == [
        (0.5, 8), (0.7, 8), (0.9, 8), (0.99, 8), (0.999, 8), (0.99, 16), (0.999, 16)]
    sb = run_test_time_depth.settings_for("ut_stick_breaking", {"threshold": 0.95, "max_steps": 8}, (1,), (1,))
    assert 0.95 in [s["threshold"] for s in sb] and {s["max_steps"] for s in sb} == {8}  # the trained one added


class FakeModule:
    def __init__(self, model):
        self.model = model


def tiny(recurrence):
    torch.manual_seed(0)
    return build_model("universal", {"d_model": 16, "n_heads": 2, "d_ff": 16, "dropout": 0.0, "src_vocab_size": 13,
                                     "tgt_vocab_size": 13, "n_steps": 4, "act_max_steps": 8,
                                     "recurrence": recurrence}).eval()


@pytest.mark.parametrize("recurrence", ["fixed", "act"])
def test_the_sweep_applies_every_setting_and_resumes(tmp_path, monkeypatch, recurrence):
    calls = []
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_text("")

    def fake_eval(module, key, size, batch, decode):
        """What the model is set to when it is evaluated."""
        stacks = knobs.universal_stacks(module.model)
        seen = ({"n_steps": stacks[0].n_steps} if recurrence == "fixed" else
                {"threshold": stacks[0].halting.threshold, "max_steps": stacks[0].halting.max_steps})
        assert all(s.n_steps == stacks[0].n_steps for s in stacks)
        calls.append((key, seen))
        steps = float(seen.get("n_steps", seen.get("max_steps")))
        return {"token_acc": 0.5, "seq_acc": 0.1, "steps_encoder": steps, "steps_decoder": steps, **seen,
                "mean_src_len": 10.0, "mean_tgt_len": 11.0, "seconds": 0.0}

    monkeypatch.setattr(evaluation, "checkpoint_path", lambda *a: ckpt)
    monkeypatch.setattr(evaluation, "load_module", lambda path, task: FakeModule(tiny(recurrence)))
    monkeypatch.setattr(evaluation, "copy_eval", fake_eval)
    config = "algorithmic_ut" if recurrence == "fixed" else "algorithmic_ut_act"
    result = {"run_id": f"{config}__copy__seed0", "variant": "copy", "seed": 0, "config_name": config,
              "cache_key": "k1", "model_config": MC, "model_name": "universal"}
    args = run_test_time_depth.parser().parse_args(["--jobs", "1"])
    records = run_test_time_depth.sweep([result], tmp_path, args)
    settings = records[0]["settings"]
    expected = run_test_time_depth.settings_for(run_halting.mechanism_of(config),
                                                {"n_steps": 4} if recurrence == "fixed" else
                                                {"threshold": 0.99, "max_steps": 8})
    assert list(settings) == [run_test_time_depth.label(s) for s in expected]
    for s in expected:
        entry = settings[run_test_time_depth.label(s)]
        for key in run_halting.COPY_EVALS:
            assert {k: entry["metrics"][key][k] for k in s if k != "kind"} == pytest.approx(
                {k: v for k, v in s.items() if k != "kind"})
    assert [e["trained"] for e in settings.values()].count(True) == 1
    assert len(calls) == 2 * len(expected)
    on_disk = json.loads((tmp_path / "runs" / f"{result['run_id']}.json").read_text())
    assert on_disk["settings"].keys() == settings.keys() and on_disk["train_cache_key"] == "k1"
    run_test_time_depth.sweep([result], tmp_path, args)
    assert len(calls) == 2 * len(expected)  # resumed: nothing redone
    run_test_time_depth.sweep([{**result, "cache_key": "k2"}], tmp_path, args)
    assert len(calls) == 4 * len(expected)  # a new training run: everything redone


# ------------------------------------------------------------------------------------------------ halting report
def copy_metrics(char, seq, steps_enc, steps_dec, length=20.0):
    return {"token_acc": char, "seq_acc": seq, "decoded_token_acc": char - 0.1, "decoded_seq_acc": seq,
            "steps_encoder": steps_enc, "steps_decoder": steps_dec, "mean_src_len": length,
            "mean_tgt_len": length + 1, "seconds": 3.0}


def babi_metrics(error, short, long, steps, items=8.0):
    return {"error": error, "acc": 1 - error, "error_short": short, "error_long": long, "median_facts": 6.0,
            "steps_encoder": steps, "mean_items": items, "seconds": 2.0}


def fake(config, variant, seed, model_config=MC, **stages):
    return {"config_name": config, "variant": variant, "seed": seed, "run_id": f"{config}__{variant}__seed{seed}",
            "params": 100, "metrics": stages, "machine": "test machine", "model_config": model_config,
            "command": "python -m experiments.run_training ...", "total_seconds": 120.0}


def halting_results():
    babi_mc = {"d_model": 64, "d_ff": 128}
    return [
        fake("algorithmic_ut", "copy", 0, test=copy_metrics(0.3, 0.0, 4, 4),
             test_le40=copy_metrics(0.9, 0.4, 4, 4), test_uniform400=copy_metrics(0.5, 0.0, 4, 4, 200.0)),
        fake("algorithmic_ut", "copy", 1, test=copy_metrics(0.3, 0.0, 4, 4),
             test_le40=copy_metrics(1.0, 0.6, 4, 4), test_uniform400=copy_metrics(0.7, 0.1, 4, 4, 200.0)),
        fake("algorithmic_ut_act", "copy", 0, test=copy_metrics(0.4, 0.0, 2, 3),
             test_le40=copy_metrics(0.95, 0.5, 2, 2), test_uniform400=copy_metrics(0.8, 0.2, 2, 2, 200.0)),
        fake("babi_1k_ut", "task1", 0, babi_mc, test_by_length=babi_metrics(0.05, 0.04, 0.06, 4.0),
             val={"error": 0.02}),
        fake("babi_1k_ut_act", "task1", 0, babi_mc, test_by_length=babi_metrics(0.01, 0.0, 0.02, 2.0),
             val={"error": 0.0}),
    ]


def test_halting_report(tmp_path):
    args = run_halting.parser().parse_args(["--tasks", "copy", "task1", "--seeds", "0", "1"])
    specs = run_halting.build_specs(args)
    text = run_halting.write_report(halting_results(), args, tmp_path, ["run_halting", "--seeds", "0", "1"], specs)
    assert text == (tmp_path / "README.md").read_text()
    assert "5/20 runs finished" in text and "test machine" in text
    ut_fl = evaluation.copy_flops(MC, copy_metrics(0, 0, 4, 4, 200.0))
    act_fl = evaluation.copy_flops(MC, copy_metrics(0, 0, 2, 2, 200.0))
    assert (f"| UT (fixed T = 4) | 2 | 0.95 / 0.50 [0.90-1.00] | 0.30 / 0.00 [0.30-0.30] | 0.60 / 0.05 [0.50-0.70] "
            f"| 0.50 / 0.05 [0.40-0.60] | 4.00 / 4.00 | 4.00 / 4.00 | {ut_fl / 1e6:.3f} | 1.00x | 2.0 |") in text
    assert (f"| UT+ACT | 1 | 0.95 / 0.50 | 0.40 / 0.00 | 0.80 / 0.20 | 0.70 / 0.20 | 2.00 / 2.00 | 2.00 / 2.00 | "
            f"{act_fl / 1e6:.3f} | {act_fl / ut_fl:.2f}x | 2.0 |") in text
    assert "UT+PonderNet |" not in text  # no runs: no row
    assert (f"copy, char-acc, len U[1, 400]: UT+ACT 0.80 > UT (fixed T = 4) 0.60 (UT+ACT leads by 0.20); UT+ACT at "
            f"{act_fl / ut_fl:.2f}x the fixed UT's FLOPs per token") in text
    assert "copy, char-acc, len <= 40 (train dist.): UT+ACT 0.95 > UT (fixed T = 4) 0.95 (" in text
    ut_b = evaluation.babi_flops({"d_model": 64, "d_ff": 128}, babi_metrics(0, 0, 0, 4.0))
    assert f"| 1 | UT+ACT | 1 | 1.0 | 1.0 | 0.0 | 2.0 | 0.0 | 2.00 | {ut_b / 2e3:.1f} | 0.50x | 2.0 |" in text
    assert "| 1 | UT (fixed T = 4) | 1 | 5.0 | 5.0 | 4.0 | 6.0 | 2.0 | 4.00 |" in text
    assert "NOT LEARNED: UT (fixed T = 4), seed 0: char-acc 0.90" not in text  # 0.90 is learned (>= 0.9)
    assert "yes, every finished run" in text
    assert ("bAbI task 1, test error % (mean over seeds): UT+ACT 1.0 < UT (fixed T = 4) 5.0 (UT+ACT leads by 4.0); "
            "UT+ACT at 0.50x the fixed UT's FLOPs per token") in text
    for plot in ("quality_vs_flops.png", "copy_accuracy.png", "babi_error.png"):
        assert (tmp_path / plot).is_file() and f"]({plot})" in text


def test_halting_report_with_missing_metrics_reads_na(tmp_path):
    args = run_halting.parser().parse_args(["--tasks", "copy", "--seeds", "0"])
    results = [fake("algorithmic_ut_act", "copy", 0, test=copy_metrics(0.4, 0.0, 2, 3))]
    text = run_halting.write_report(results, args, tmp_path, ["run_halting"], run_halting.build_specs(args))
    assert "| UT+ACT | 1 | n/a | 0.40 / 0.00 | n/a |" in text
    results = [fake("algorithmic_ut", "copy", 0, test_le40=copy_metrics(0.5, 0.0, 4, 4))]
    text = run_halting.write_report(results, args, tmp_path, ["run_halting"], run_halting.build_specs(args))
    assert "NOT LEARNED: UT (fixed T = 4), seed 0: char-acc 0.50" in text
    assert "copy, char-acc, len U[1, 400]: n/a" in text


# ----------------------------------------------------------------------------------------- test-time depth report
def setting_entry(setting, trained, **metrics):
    return {"setting": setting, "trained": trained, "metrics": metrics, "seconds": 1.0}


def depth_records():
    def copy_entry(n, short, long):
        return setting_entry({"kind": "fixed", "n_steps": n}, n == 4, test_le40=copy_metrics(short, 0.1, n, n),
                             test_uniform400=copy_metrics(long, 0.0, n, n, 200.0))

    fixed = {"run_id": "algorithmic_ut__copy__seed0", "task": "copy", "seed": 0, "mechanism": "ut",
             "model_config": MC, "trained": {"n_steps": 4},
             "settings": {"T'=2": copy_entry(2, 0.90, 0.40), "T'=4": copy_entry(4, 0.99, 0.50),
                          "T'=8": copy_entry(8, 0.98, 0.62)}}

    def act_entry(thr, cap, steps, short, long):
        return setting_entry({"kind": "halting", "threshold": thr, "max_steps": cap}, (thr, cap) == (0.99, 8),
                             test_by_length=babi_metrics((short + long) / 2, short, long, steps))

    acts = [{"run_id": f"babi_1k_ut_act__task1__seed{seed}", "task": "task1", "seed": seed, "mechanism": "ut_act",
             "model_config": {"d_model": 64, "d_ff": 128}, "trained": {"threshold": 0.99, "max_steps": 8},
             "settings": {"thr=0.5, cap 8": act_entry(0.5, 8, 1.0, 0.30, 0.40),
                          "thr=0.99, cap 8": act_entry(0.99, 8, 2.0, 0.05, 0.10 + 0.02 * seed),
                          "thr=0.999, cap 16": act_entry(0.999, 16, 3.0, 0.06, 0.20 + 0.02 * seed)}}
            for seed in (0, 1)]
    return [fixed, *acts]


def test_test_time_depth_report(tmp_path):
    args = run_test_time_depth.parser().parse_args(["--tasks", "copy", "task1", "--seeds", "0", "1"])
    results = [fake("algorithmic_ut", "copy", 0)]
    text = run_test_time_depth.write_report(depth_records(), results, args, tmp_path, ["run_test_time_depth"])
    assert text == (tmp_path / "README.md").read_text()
    assert ("More depth at test time helped the longer inputs in 1 of 2 (model, task) pairs, hurt them in 1, "
            "changed nothing") in text
    assert ("copy, UT (fixed T = 4): helps: from the trained setting (T'=4, 4.00 steps) to the best deeper one on "
            "the long inputs (T'=8, 8.00 steps), char-acc on U[1, 400] 0.500 -> 0.620 (+0.120), on len <= 40 0.990 -> "
            "0.980 (-0.010)") in text
    assert ("bAbI task 1, UT+ACT: hurts: from the trained setting (thr=0.99, cap 8, 2.00 steps) to the best deeper "
            "one on the long inputs (thr=0.999, cap 16, 3.00 steps), error % on long stories 11.0 -> 21.0 (+10.0), "
            "on short stories 5.0 -> 6.0 (+1.0)") in text
    fl = evaluation.copy_flops(MC, copy_metrics(0, 0, 8, 8, 200.0))
    assert f"| UT (fixed T = 4) | T'=8 | 1 | 8.00 / 8.00 | {fl / 1e6:.3f} | 0.98 | 0.10 | 0.62 | 0.00 |" in text
    assert "| UT (fixed T = 4) | T'=4 (trained) | 1 |" in text
    rows = text.split("## bAbI task 1")[1]
    assert rows.index("thr=0.5, cap 8 |") < rows.index("thr=0.99, cap 8 (trained) | 2 |") < rows.index(
        "thr=0.999, cap 16 |")  # by executed steps; two seeds averaged
    fl_act = evaluation.babi_flops({"d_model": 64, "d_ff": 128}, babi_metrics(0, 0, 0, 3.0))
    assert f"| UT+ACT | thr=0.999, cap 16 | 2 | 3.00 | {fl_act / 1e3:.1f} | 13.5 | 6.0 | 21.0 |" in text
    assert (tmp_path / "quality_vs_steps.png").is_file()


def test_answer_no_change_and_nothing_deeper():
    rows = run_test_time_depth.table_rows(depth_records()[:1])[("copy", "ut")]
    for r in rows:
        if r["label"] == "T'=8":
            r["test_uniform400/token_acc"] = 0.505
    assert run_test_time_depth.answer(rows, "copy")[0] == "no change"
    shallow = [r for r in rows if r["label"] != "T'=8"]
    assert run_test_time_depth.answer(shallow, "copy") == ("n/a", "no setting runs deeper than the trained one")


def test_report_only_reads_records_of_the_same_training_run(tmp_path):
    rec = depth_records()[0]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{rec['run_id']}.json").write_text(json.dumps({**rec, "train_cache_key": "a"}))
    assert len(run_test_time_depth.load_records(tmp_path, [{"run_id": rec["run_id"], "cache_key": "a"}])) == 1
    assert run_test_time_depth.load_records(tmp_path, [{"run_id": rec["run_id"], "cache_key": "b"}]) == []


def test_copy_eval_rejects_an_unknown_set():
    with pytest.raises(ValueError, match="unknown copy test set"):
        evaluation.copy_eval(SimpleNamespace(), "test_le400", 4)
