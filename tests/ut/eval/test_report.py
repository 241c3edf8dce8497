"""The WikiSum report generator on a recorded run (a small results.json + figures the test writes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ut.eval.report import l_sweep_figure, load_results, results_table, sweep_groups, write_report


def _row(name, L, group=None, status="ok", with_maps=False):
    row = {"name": name, "model": "transformer", "L": L, "extractor": "tfidf", "params": 1_234_567, "steps": 20,
           "time_per_step_s": 0.01 * L, "peak_rss_mb": 500 + L, "status": status,
           "curve": [[i, 6.0 - 0.1 * i] for i in range(1, 21)],
           "metrics": {"log_ppl": 4.2, "rouge1": 20.0, "rouge2": 3.0, "rougeL": 15.5, "rougeLsum": 17.0,
                       "distinct_outputs": 1.0},
           "samples": [{"title": "Alain Connes", "reference": "alain connes is a french mathematician .",
                        "prediction": "alain connes is a mathematician | pipe ."}],
           "val_curve": [[10, 5.0], [20, 4.2]],
           "figures": ["figs/val_attention_decoder_cross_example0_step20.png",
                       "figs/val_ponder_map_encoder_step20.png"] if with_maps else []}
    if group:
        row["group"] = group
    if status != "ok":
        for key in ("time_per_step_s", "peak_rss_mb", "metrics", "samples", "curve", "steps"):
            row.pop(key)
    return row


@pytest.fixture
def recorded(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "figs").mkdir()
    from ut.lit.figures import attention_grid, close, ponder_map

    fig = attention_grid([np.random.rand(2, 8, 12)], "decoder_cross attention")
    fig.savefig(tmp_path / "figs" / "val_attention_decoder_cross_example0_step20.png")
    close(fig)
    fig = ponder_map([np.random.rand(12) + 1], "encoder ponder time")
    fig.savefig(tmp_path / "figs" / "val_ponder_map_encoder_step20.png")
    close(fig)
    rows = [_row("T-ED L=100", 100, "T-ED", with_maps=True), _row("T-ED L=500", 500, "T-ED"),
            _row("T-ED L=11000", 11000, "T-ED", status="not run: over the 60 s limit on this machine"),
            _row("T-D L=100", 100, "T-D"), _row("T-D L=500", 500, "T-D")]
    results = {"experiment": "lsweep", "title": "L sweep (test)", "command": "python -m experiments.wikisum.lsweep",
               "machine": {"cpus": 2}, "date": "2026-01-01", "notes": ["tiny"], "rows": rows}
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_report_has_tables_figures_maps_and_samples(recorded):
    path = write_report(recorded, root=recorded.parent)
    text = path.read_text()
    assert path == recorded / "report.md"
    assert "# L sweep (test)" in text and "python -m experiments.wikisum.lsweep" in text
    assert "| T-ED L=500 | 500 | tfidf | 1.23M |" in text
    assert "not run: over the 60 s limit" in text  # the failed cell stays, with its reason
    assert "15.5" in text and "4.200" in text
    for fig in ("learning_curves.png", "l_sweep.png", "t_ed_l_100__val_attention_decoder_cross_example0_step20.png",
                "t_ed_l_100__val_ponder_map_encoder_step20.png"):
        assert (recorded / fig).stat().st_size > 1000, fig
        assert f"({fig})" in text
    assert "## Sample outputs" in text and "alain connes is a french mathematician" in text
    assert "mathematician / pipe" in text  # a | in a sample does not break the table


def test_collapsed_outputs_are_flagged(tmp_path):
    row = _row("T-ED", 500)
    row["metrics"].update(decoded_examples=5, distinct_outputs=0.2)
    text = write_report({"rows": [row]}, tmp_path).read_text()
    assert "same output for all 5 inputs" in text
    row["metrics"].update(distinct_outputs=1.0, repeated_sentences=0.8)
    assert "repeats sentences" in write_report({"rows": [row]}, tmp_path).read_text()


def test_table_and_groups_without_optional_fields():
    rows = [{"name": "x", "L": 100, "status": "failed: boom"}]
    table = results_table(rows)
    assert table.splitlines()[2].startswith("| x | 100 | - |") and "failed: boom" in table
    assert sweep_groups(rows) == {}
    assert set(sweep_groups([_row("a", 100, "g"), _row("b", 500, "g"), _row("c", 100)])) == {"g"}


def test_missing_results_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the experiment script"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="out_dir"):
        write_report({"rows": []})
    assert write_report({"rows": []}, tmp_path / "r").is_file()


def test_l_sweep_plots_log_ppl_time_and_memory_against_L():
    rows = [_row("T-D L=100", 100, "T-D"), _row("T-D L=500", 500, "T-D")]
    rows[1]["metrics"]["log_ppl"] = 3.9
    fig = l_sweep_figure(rows, "sweep")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 and titles[0].startswith("validation log-ppl after 20 steps vs L")
    assert "seconds per training step vs L" in titles and "peak resident memory (MB) vs L" in titles
    assert list(fig.axes[0].lines[0].get_ydata()) == [4.2, 3.9] and list(fig.axes[0].lines[0].get_xdata()) == [100, 500]
    for r in rows:
        r.pop("metrics")
    assert len(l_sweep_figure(rows).axes) == 2  # no log-ppl measured: no empty panel
