"""Machine kind / ISA detection, the suite's row registry, bf16 rows sized by native support, per-kind results."""

from __future__ import annotations

import pytest
import torch

from benchmarks import machine, run_all
from benchmarks.report import evaluate_targets, write_markdown

AMD_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
"""
INTEL_AVX512 = """vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6148
flags\t\t: fpu avx avx2 avx512f avx512bw
"""


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path

    return write


def test_machine_kind_names_vendor_and_best_vector_tier(cpuinfo):
    assert machine.machine_kind(cpuinfo(AMD_AVX2)) == "amd-avx2"
    assert machine.machine_kind(cpuinfo(INTEL_AMX)) == "intel-amx"
    assert machine.machine_kind(cpuinfo(INTEL_AVX512)) == "intel-avx512"
    assert machine.cpu_vendor_and_model(cpuinfo(AMD_AVX2)) == ("AuthenticAMD", "AMD EPYC 7B13 64-Core Processor")


def test_isa_summary_records_each_flag(cpuinfo):
    from ut.precision import cpu_flags

    isa = machine.isa_summary(cpu_flags(cpuinfo(AMD_AVX2)))
    assert isa["avx2"] and isa["fma"] and not isa["avx512f"] and not isa["avx512_bf16"] and not isa["amx_bf16"]
    isa = machine.isa_summary(cpu_flags(cpuinfo(INTEL_AMX)))
    assert isa["avx512_bf16"] and isa["amx_bf16"] and isa["amx_tile"]


def test_bf16_without_a_native_flag_is_not_native_and_runs_no_probe(cpuinfo, monkeypatch):
    def probe():
        raise AssertionError("the probe must not run without a native bf16 flag")

    monkeypatch.setattr(machine, "bf16_matmul_probe", probe)
    native, reason = machine.cpu_bf16_native(cpuinfo(AMD_AVX2))
    assert not native and "emulated" in reason


def test_bf16_flag_is_confirmed_by_the_probe(cpuinfo, monkeypatch):
    monkeypatch.setattr(machine, "bf16_matmul_probe", lambda: (False, 1e-3, 4e-2))
    native, reason = machine.cpu_bf16_native(cpuinfo(INTEL_AMX))
    assert not native and "slower in the probe" in reason
    monkeypatch.setattr(machine, "bf16_matmul_probe", lambda: (True, 1e-3, 2e-4))
    assert machine.cpu_bf16_native(cpuinfo(INTEL_AMX))[0]


def test_machine_description_carries_kind_isa_and_bf16(cpuinfo, monkeypatch):
    d = machine.machine_description(cpuinfo(AMD_AVX2))
    assert d["machine_kind"] == "amd-avx2" and d["cpu_model"].startswith("AMD EPYC")
    assert d["bf16_native"] is False and d["isa"]["avx2"] and d["isa_tier"] == "avx2"


# ------------------------------------------------------------------ the row registry


def test_row_names_and_keys_are_unique_and_are_the_cli_choices():
    assert len(set(run_all.ROW_NAMES)) == len(run_all.ROW_NAMES)
    assert len(set(run_all.ROW_KEYS)) == len(run_all.ROW_KEYS)
    with pytest.raises(SystemExit):
        run_all.main(["--skip", "no_such_row"])


def test_selected_rows_default_only_with_skip():
    default = [r.name for r in run_all.selected_rows()]
    assert "compile" not in default and "training" in default and "small_models" in default
    assert [r.name for r in run_all.selected_rows(with_=["compile"])] == [
        r.name for r in run_all.ROWS if r.default or r.name == "compile"]
    assert [r.name for r in run_all.selected_rows(only=["compile", "bf16"])] == ["bf16", "compile"]
    assert "training" not in [r.name for r in run_all.selected_rows(skip=["training"])]
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        run_all.selected_rows(only=["nope"])


def test_every_row_name_in_the_command_line_comes_from_the_registry():
    """--skip / --only / --with accept exactly the registry's names, --with's help names its opt-in rows, the
    epilog lists each row once, and the module docstring's examples name only registry rows."""
    import re

    cli = run_all.parser()
    actions = {action.dest: action for action in cli._actions}
    for dest in ("skip", "only", "with_"):
        assert tuple(actions[dest].choices) == run_all.ROW_NAMES, dest
    assert run_all.OPT_IN_ROWS == ("compile",)
    assert actions["with_"].help.endswith(f"({', '.join(run_all.OPT_IN_ROWS)})")
    assert re.findall(r"(?:^rows: |; )([a-z_0-9]+): ", cli.epilog) == list(run_all.ROW_NAMES)
    examples = re.findall(r"--(?:only|skip|with) ([a-z_0-9 ]+?)\s*#", run_all.__doc__)
    named = [name for args in examples for name in args.split()]
    assert named and set(named) <= set(run_all.ROW_NAMES), named


class _KeysAsked(dict):
    """A results dict that records every key read from it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)


def test_the_report_reads_the_result_keys_of_the_registry_and_no_other(tmp_path):
    """Every key a row writes is shown by the report (targets or Markdown), and the report reads no row key that
    no row writes: an empty suite's results, with every lookup recorded."""
    suite = {"quick": False, "command": "c", "started": "s", "total_seconds": 1.0, "targets": [],
             "machine": {**_fake_machine(False), "load_average_at_end": (1.0, 1.0, 1.0)},
             "matmul_peak": {"float32": {"gflops": 1.0, "by_size": {64: 1.0}}}}
    results = _KeysAsked(suite)
    evaluate_targets(results)
    write_markdown(results, tmp_path / "r.md", "r.png")
    suite_level = set(suite) | {"notes", "updates", "rows_run"}
    assert results.asked - suite_level == set(run_all.ROW_KEYS)


def _fake_machine(native: bool) -> dict:
    return {"machine_kind": "amd-avx2" if not native else "intel-amx", "cpu_model": "cpu", "cpu_count": 2,
            "torch": "2", "torch_threads": 1, "python": "3", "load_average_at_start": (1.0, 1.0, 1.0),
            "bf16_native": native, "bf16_reason": "no native bf16 flag: bf16 is emulated here" if not native
            else "native", "isa": {"avx2": True}}


def test_bf16_rows_are_skipped_with_the_reason_where_bf16_is_emulated(monkeypatch):
    """The AVX2-only case: no bf16 matmul peak is measured (it took ~10 minutes there) and the row says why."""
    import benchmarks.flops

    measured = []

    def fake_peak(dtype, sizes, repeats):
        measured.append(dtype)
        return benchmarks.flops.MatmulPeak(str(dtype).replace("torch.", ""), 100.0, {64: 100.0})

    monkeypatch.setattr(run_all, "machine_description", lambda: _fake_machine(False))
    monkeypatch.setattr(benchmarks.flops, "measure_matmul_peak", fake_peak)
    bf16 = [r for r in run_all.ROWS if r.name == "bf16"]
    results = run_all.run_suite(quick=True, rows=bf16)
    assert measured == [torch.float32]
    assert "emulated" in results["bf16"]["skipped"]
    assert not any("bf16" in t["target"] for t in results["targets"])


def test_update_never_merges_results_of_another_machine_kind():
    previous = {"machine": _fake_machine(True), "training": [], "targets": []}
    update = {"machine": _fake_machine(False), "command": "c", "started": "s", "total_seconds": 1.0, "training": []}
    with pytest.raises(ValueError, match="machine kind 'intel-amx'"):
        run_all.merge_update(previous, update)
    update = {"machine": _fake_machine(True), "command": "c", "started": "s", "total_seconds": 1.0,
              "compile": [{"config": "x", "error": "e"}]}
    merged = run_all.merge_update(previous, update)
    assert merged["compile"] == [{"config": "x", "error": "e"}] and merged["updates"][0]["rows"] == ["compile"]


def test_results_go_to_a_folder_per_machine_kind(monkeypatch, tmp_path):
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(machine, "machine_kind", lambda: "amd-avx2")
    seen = {}

    def fake_suite(quick, rows):
        seen["rows"] = [r.name for r in rows]
        return {"quick": quick, "command": "c", "started": "s", "total_seconds": 1.0, "targets": [],
                "machine": {**_fake_machine(False), "load_average_at_end": (1.0, 1.0, 1.0)},
                "matmul_peak": {"float32": {"gflops": 1.0, "by_size": {64: 1.0}}}}

    monkeypatch.setattr(run_all, "run_suite", fake_suite)
    run_all.main(["--quick", "--only", "compile"])
    assert (tmp_path / "amd-avx2" / "suite_quick.json").exists() and seen["rows"] == ["compile"]
    assert "amd-avx2" in (tmp_path / "amd-avx2" / "suite_quick.md").read_text()


def _xt_results() -> dict:
    def row(config, ours, xt, ut, xtt):
        return {"config": config, "contenders": {"ours": {"tokens_per_s": ours}, "x-transformers": {"tokens_per_s": xt},
                                                 "ours UT": {"tokens_per_s": ut},
                                                 "x-transformers (tied layers)": {"tokens_per_s": xtt}},
                "ratios": {"ours / x-transformers": ours / xt, "ours UT / x-transformers (tied layers)": ut / xtt},
                "parameter_mismatch": {"ours vs x-transformers": -0.003,
                                       "ours UT vs x-transformers (tied layers)": -0.002}}

    return {
        "quick": False, "command": "c", "started": "s", "total_seconds": 60,
        "machine": {**_fake_machine(False), "load_average_at_end": (1, 1, 1)},
        "matmul_peak": {"float32": {"gflops": 1.0, "by_size": {64: 1.0}}},
        "bf16": {"skipped": "no native bf16 flag: bf16 is emulated here"},
        "compile": [{"config": "d64", "tokens_per_s": {"eager": 10.0, "compiled": 8.0}, "compile_seconds": 3.0,
                     "speedup_compiled_over_eager": 0.8}],
        "xtransformers_training": [row("enc-dec d128 drop0.1", 120, 100, 130, 100), row("dec-only d512", 105, 100, 99,
                                                                                      100)],
        "xtransformers_decoding": [{"kind": "enc-dec", "config": "enc-dec d256 B2 S256", "out_tokens": 256,
                                    "tokens_per_s": {"ours": 300.0, "x-transformers": 200.0},
                                    "ours / x-transformers": 1.5}],
        "small_models": {"peer_steps": [{"config": "algorithmic_transformer", "label": "d64", "skipped": {},
                                         "seconds": {"ours": 0.01, "x-transformers": 0.013},
                                         "ratios": {"ours / x-transformers": 1.3}}],
                         "lightning_overhead": [{"config": "algorithmic_transformer", "framework_share": 0.15,
                                                 "data_share": 0.05, "seconds_per_step": {
                                                     "lightning": 0.02, "bare": 0.017, "fixed batch": 0.016}}],
                         "errors": {"babi_1k_ut": "FileNotFoundError: no data"}},
    }


def test_new_targets_are_judged():
    targets = {t["target"]: t for t in evaluate_targets(_xt_results())}
    assert targets["ours >= 1.1x x-transformers training tokens/s at equal dims"]["met"] is False  # 1.05x
    assert targets["our UT >= 1.1x x-transformers (tied layers) training tokens/s at equal dims"]["met"] is False
    assert targets["cached greedy decoding >= 1.2x x-transformers' cached generation at 256 tokens"]["met"] is True
    assert targets["Lightning overhead <= 10% of a training step (small-model configs)"]["met"] is False  # 15%
    assert targets["small-model configs: ours >= 1.2x x-transformers (step time)"]["met"] is True


def test_markdown_shows_skips_compile_and_new_tables(tmp_path):
    results = _xt_results()
    results["targets"] = evaluate_targets(results)
    write_markdown(results, tmp_path / "r.md", "r.png")
    text = (tmp_path / "r.md").read_text()
    assert "bf16 is emulated here" in text and "amd-avx2" in text
    assert "| d64 | 10 | 8 | 0.80x | 3 s |" in text
    assert "ours vs x-transformers" in text.lower() and "-0.3%" in text
    assert "babi_1k_ut | not run: FileNotFoundError" in text
    assert "15%" in text


@pytest.mark.parametrize("quick", [True, False])
def test_both_plans_size_every_row(quick):
    p = run_all.plan(quick)
    for key in ("xt_seq2seq", "xt_decoder_only", "xt_decoding", "compile", "small_models", "bf16", "peer_configs"):
        assert p[key], key
    from benchmarks.small_models import CONFIGS

    assert all((CONFIGS / f"{name}.yaml").is_file() for name in p["small_models"]["configs"])
