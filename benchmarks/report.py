"""Turn the suite's results dict into a Markdown report and a plot; the targets are ``benchmarks/targets.py``'s."""

from __future__ import annotations

from pathlib import Path

from benchmarks.targets import evaluate_targets

__all__ = ["evaluate_targets", "write_markdown", "write_plot"]  # run_all.py and the tests import all three from here


def _fmt_tok(x: float) -> str:
    return f"{x:,.0f}"


def write_markdown(results: dict, path: Path, plot_name: str) -> None:
    """The suite's Markdown report: one section per part of ``results`` that ran, in a fixed order."""
    lines = _header_markdown(results) + _targets_markdown(results) + _training_markdown(results)
    lines += _xtransformers_markdown(results) + _small_models_markdown(results)
    for section in (_bf16_markdown, _compile_markdown, _decoding_markdown, _universal_markdown,
                    _dropout_memory_markdown, _data_markdown, _notes_markdown):
        lines += section(results)
    lines += ["## Plot", "", f"![suite]({plot_name})", ""]
    path.write_text("\n".join(lines))


def _header_markdown(results: dict) -> list[str]:
    """Title, command, machine (and its kind), rows rerun later, and the note on the shared machine."""
    m = results["machine"]
    lines = [
        "# Benchmark suite results" + (" (QUICK smoke run: small sizes, not for claims)" if results["quick"] else ""),
        "",
        f"Command: `{results['command'].strip()}` (from the repository root; `make bench` runs it). "
        f"Started {results['started']}, took {results['total_seconds'] / 60:.1f} min.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}. Load average at start {tuple(round(x, 1) for x in m['load_average_at_start'])}, "
        f"at end {tuple(round(x, 1) for x in m['load_average_at_end'])}.",
        "",
    ]
    if "machine_kind" in m:
        isa = ", ".join(k for k, v in m["isa"].items() if v) or "none of the tracked flags"
        lines += [f"Machine kind **{m['machine_kind']}** (ISA: {isa}; torch CPU capability "
                  f"{m.get('torch_cpu_capability')}). bf16: {'native' if m['bf16_native'] else 'NOT native'} -- "
                  f"{m['bf16_reason']}.", ""]
    for u in results.get("updates", []):
        load = tuple(round(x, 1) for x in u["machine"]["load_average_at_start"])
        lines += [f"Rows {', '.join(u['rows'])} were rerun at {u['started']} by `{u['command'].strip()}` "
                  f"({u['seconds'] / 60:.1f} min, {u['machine']['torch_threads']} threads; load average then "
                  f"{load}) and merged in.", ""]
    return lines + [
        "**The machine was shared** with other engineers' test runs while this ran, so absolute figures are noisy. "
        "Mitigation: every comparison runs its contenders in one process, interleaved (A B C, B C A, ...), after "
        "warm-up, and reports the median over repeats; ratios are taken within a row, never across runs.",
        "",
    ]


def _targets_markdown(results: dict) -> list[str]:
    """The targets table and the measured matmul peak."""
    lines = ["## Targets", "", "| target | required | measured | met | margin |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['required']} | {t['measured']} | {met} | {t['margin']} |")
    peaks = results["matmul_peak"]
    return lines + ["", "## Measured matmul peak", "",
                    ", ".join(f"{k}: {v['gflops']:.0f} GFLOP/s (by size: "
                              + ", ".join(f"{n}: {g:.0f}" for n, g in v["by_size"].items()) + ")"
                              for k, v in peaks.items()), ""]


def _training_markdown(results: dict) -> list[str]:
    """Training-step throughput of ours and the peers per config, with ratios and MFU."""
    if not results.get("training"):
        return []
    lines = ["## Training step throughput (tokens/s, source + target, forward + backward + Adam; fp32)", "",
             "Vocabulary 8192, shared embeddings, ReLU FFN, pre-norm for ours and torch.nn.Transformer "
             "(BART is post-norm, its own design). Dropout placement: ours = embeddings + residual + FFN inner; "
             "BART = the same (dropout + activation_dropout), attention_dropout 0 for both; torch.nn.Transformer "
             "also drops attention weights (no separate knob). MFU = counted model FLOPs / s over the measured "
             "fp32 peak (`benchmarks/flops.py`).", "",
             "x-transformers: the same dropout places as ours, no attention biases (parameters within 1%).", ""]
    names = list(dict.fromkeys(n for r in results["training"] for n in r["contenders"]))
    peers = [n for n in names if n != "ours"]
    lines += ["| config | " + " | ".join(names) + " | " + " | ".join(f"ours / {n}" for n in peers)
              + " | MFU ours |", "|---" * (len(names) + len(peers) + 2) + "|"]
    for r in results["training"]:
        c = r["contenders"]
        mfu = c["ours"].get("mfu_fp32")
        lines.append(f"| {r['config']} | " + " | ".join(_fmt_tok(c[n]["tokens_per_s"]) if n in c else "skipped"
                                                       for n in names) + " | "
                     + " | ".join(f"{r['ratios'][f'ours / {n}']:.2f}x" if f"ours / {n}" in r["ratios"] else "-"
                                  for n in peers) + (f" | {mfu:.0%} |" if mfu is not None else " | - |"))
    skipped = {n: why for r in results["training"] for n, why in r.get("skipped", {}).items()}
    return lines + [""] + [f"Skipped: {n}: {why}." for n, why in skipped.items()] + ([""] if skipped else [])


def _bf16_markdown(results: dict) -> list[str]:
    """bf16 autocast vs fp32: throughput, MFU and the loss-curve check."""
    if "skipped" in results.get("bf16", {}):
        return ["## bf16 autocast vs fp32 (ours)", "", f"Skipped: {results['bf16']['skipped']}.", ""]
    if "bf16" not in results:
        return []
    b = results["bf16"]
    c = b["loss_curve_check"]
    return ["## bf16 autocast vs fp32 (ours)", "",
            f"{b['config']}: fp32 {_fmt_tok(b['tokens_per_s']['fp32'])} tok/s, bf16 "
            f"{_fmt_tok(b['tokens_per_s']['bf16'])} tok/s = **{b['speedup_bf16_over_fp32']:.2f}x**; MFU fp32 "
            f"{b['mfu']['fp32']:.0%} of the fp32 peak, bf16 {b['mfu']['bf16']:.0%} of the bf16 peak.", "",
            f"Loss-curve check ({c['config']}, {c['steps']} Adam steps from the same weights on the same 4 "
            f"batches): loss {c['start']:.3f} -> fp32 {c['end_fp32']:.4f} / bf16 {c['end_bf16']:.4f} (mean of "
            f"the last quarter); largest per-step difference {c['max_step_abs_difference']:.4f}.", ""]


def _compile_markdown(results: dict) -> list[str]:
    """torch.compile vs eager, one row per config (or the error where it does not work)."""
    if "compile" not in results:
        return []
    rows = results["compile"] if isinstance(results["compile"], list) else [results["compile"]]
    lines = ["## torch.compile vs eager (ours)", "", "| config | eager tok/s | compiled tok/s | compiled / eager "
             "| compile time (first step) |", "|---|---|---|---|---|"]
    for c in rows:
        if "error" in c:
            lines.append(f"| {c['config']} | does not work here: {c['error'][:120]} | | | |")
        else:
            lines.append(f"| {c['config']} | {_fmt_tok(c['tokens_per_s']['eager'])} | "
                         f"{_fmt_tok(c['tokens_per_s']['compiled'])} | {c['speedup_compiled_over_eager']:.2f}x | "
                         f"{c['compile_seconds']:.0f} s |")
    return lines + [""]


def _decoding_markdown(results: dict) -> list[str]:
    """Cached vs uncached greedy and beam decoding, output tokens/s."""
    if not results.get("decoding"):
        return []
    lines = ["## Decoding: cached vs uncached (output tokens/s, EOS disabled)", "",
             "| model | out tokens | batch | greedy cached | greedy uncached | ratio | beam cached | "
             "beam uncached | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["decoding"]:
        t = r["tokens_per_s"]
        lines.append(f"| {r['model']} | {r['out_tokens']} | {r['batch']} (beam {r['beam']}) | "
                     f"{_fmt_tok(t['greedy cached'])} | {_fmt_tok(t['greedy uncached'])} | "
                     f"{r['greedy_cached_over_uncached']:.1f}x | {_fmt_tok(t['beam cached'])} | "
                     f"{_fmt_tok(t['beam uncached'])} | {r['beam_cached_over_uncached']:.1f}x |")
    return lines + [""]


def _universal_markdown(results: dict) -> list[str]:
    """UT vs Transformer training step, and ACT compute skipping by halted share."""
    if "ut_vs_transformer" not in results:
        return []
    u = results["ut_vs_transformer"]
    lines = ["## Universal Transformer", "",
             f"Training step, {u['config']}: UT {u['seconds']['universal']:.3f} s vs Transformer "
             f"{u['seconds']['transformer']:.3f} s = **{u['ut_over_transformer_time']:.2f}x** the time.", "",
             "ACT compute skipping, one application of the shared encoder layer (forward + backward), halted "
             "positions skipped (ours) vs computed (t2t):", "",
             "| halted share | computed (s) | skipped (s) | speedup |", "|---|---|---|---|"]
    for r in results.get("act_skip", []):
        lines.append(f"| {r['halted_share']:.2f} | {r['seconds']['computed']:.4f} | "
                     f"{r['seconds']['skipped']:.4f} | {r['speedup']:.2f}x |")
    return lines + [""]


def _dropout_memory_markdown(results: dict) -> list[str]:
    """Peak memory of one causal attention with dropout, per length and back end."""
    if not results.get("attention_dropout_memory"):
        return []
    lines = ["## Attention dropout memory (one causal attention, 8 heads x 64, batch 1, forward + backward; "
             "fresh process per case)", "", "| L | mode | peak MB above start | seconds |", "|---|---|---|---|"]
    for r in results["attention_dropout_memory"]:
        if "error" in r:
            lines.append(f"| {r['length']} | {r['mode']} | error: {r['error'][:80]} | |")
        else:
            lines.append(f"| {r['length']} | {r['mode']} | {r['peak_mb']:.0f} | {r['seconds']:.2f} |")
    return lines + ["", "`sdpa_dropout` (SDPA with dropout_p 0.1, its quadratic math path on CPU) is run only where "
                    "its L x L matrices fit; it needs ~20 GB at L = 11000 (B x H x L x L floats and the dropout "
                    "mask). Long-input attention rows: `benchmarks/long_attention.py` and its results file.", ""]


def _data_markdown(results: dict) -> list[str]:
    """Data pipeline throughput and ROUGE speed (one section)."""
    lines = []
    if "data_pipeline" in results:
        d = results["data_pipeline"]
        builds = d.get("builds", [])
        lines += ["## Data pipeline and ROUGE", "",
                  f"Data pipeline ({d.get('source')}, `benchmarks/data_prep_throughput.py`): "
                  + ("; ".join(f"num_proc {b['num_proc']}: {b['articles_per_s']} articles/s" for b in builds)
                     or d.get("error", "n/a"))
                  + (f"; dump read {d['read_pages_per_s']} pages/s" if "read_pages_per_s" in d else "") + "."]
    if "rouge" in results:
        r = results["rouge"]
        lines += ["", f"ROUGE-1/2/L/Lsum (`ut.eval.rouge.rouge_scores`, stemming) on {r['pairs']} synthetic "
                  f"300-word pairs: **{r['seconds_per_1000_pairs']:.1f} s per 1,000 pairs**.", ""]
    return lines


def _notes_markdown(results: dict) -> list[str]:
    """Notes written after the run (the JSON's ``notes``)."""
    if not results.get("notes"):
        return []
    return ["## Notes (written after the run, stored in the JSON's `notes`)", ""] + [
        f"- {note}" for note in results["notes"]] + [""]


def _cell(row: dict, name: str) -> str:
    c = row["contenders"]
    return _fmt_tok(c[name]["tokens_per_s"]) if name in c else "skipped"


def _pair(row: dict, ours: str, peer: str) -> str:
    key, ratio = f"{ours} / {peer}", row.get("ratios", {})
    return f"{ratio[key]:.2f}x | {row['parameter_mismatch'][f'{ours} vs {peer}']:+.1%}" if key in ratio else "- | -"


def _xtransformers_markdown(results: dict) -> list[str]:
    lines: list[str] = []
    rows = results.get("xtransformers_training", [])
    if rows:
        lines += ["## Ours vs x-transformers at equal dims (training tokens/s, fp32)", "",
                  "Same d, heads, FFN width (ReLU), layers, vocabulary, dropout places, shared embeddings tied to the "
                  "output, sinusoidal positions, pre-norm, SDPA. Tied layers: x-transformers' `weight_tie_layers` vs "
                  "our Universal Transformer (fixed T = depth). Parameter difference = peer / ours - 1.", "",
                  "| config | ours | x-transformers | ratio | params diff | ours UT | x-t tied | ratio | params diff |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['config']} | {_cell(r, 'ours')} | {_cell(r, 'x-transformers')} | "
                         f"{_pair(r, 'ours', 'x-transformers')} | {_cell(r, 'ours UT')} | "
                         f"{_cell(r, 'x-transformers (tied layers)')} | "
                         f"{_pair(r, 'ours UT', 'x-transformers (tied layers)')} |")
        lines.append("")
    dec = results.get("xtransformers_decoding", [])
    if dec:
        lines += ["### Cached greedy decoding vs x-transformers' `generate(cache_kv=True)` (output tokens/s)", ""]
        if "skipped" in dec[0]:
            lines += [f"Skipped: {dec[0]['skipped']}.", ""]
        else:
            lines += ["| config | out tokens | ours | x-transformers | ours / x-t |", "|---|---|---|---|---|"]
            lines += [f"| {r['config']} | {r['out_tokens']} | {_fmt_tok(r['tokens_per_s']['ours'])} | "
                      f"{_fmt_tok(r['tokens_per_s']['x-transformers'])} | {r['ours / x-transformers']:.2f}x |"
                      for r in dec] + [""]
    return lines


def _small_models_markdown(results: dict) -> list[str]:
    small = results.get("small_models")
    if not small:
        return []
    lines = ["## Small-model regime (experiments/ut_paper/configs, d 64-128)", "",
             "Training step on a fixed batch of the config's real shape, peers at equal dims "
             "(`benchmarks/small_models.py`). The output part: the tied embedding, the output projection onto the "
             "vocabulary, the cross-entropy and Adam on that matrix, timed alone in the same run, as the peers "
             "compute it (logits, then `F.cross_entropy`: `shared output layer + loss`) and as ours does (fused "
             "at vocabularies >= 1024, `ut/lit/linear_cross_entropy.py`: `ours' output layer + loss`); the ratio "
             "without it, (peer - peers' part) / (ours - ours' part), is that of the layers:", "",
             "| config | dims | seconds per step | ours faster by | output part: peers' / ours |",
             "|---|---|---|---|---|"]
    for r in small.get("peer_steps", []):
        if "seconds" not in r:
            lines.append(f"| {r['config']} | - | {'; '.join(r['skipped'].values())} | | |")
            continue
        secs = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in r["seconds"].items())
        rest = r.get("ratios_without_shared", {})
        speedup = f"{r['output_loss_speedup']:.2f}x" if "output_loss_speedup" in r else "-"
        lines.append(f"| {r['config']} | {r['label']} | {secs} | " + ", ".join(
            f"{k.split(' / ')[1]}: {v:.2f}x" + (f" ({rest[k]:.2f}x without the output part, "
                                               f"{r['shared_share']:.0%} of our step)" if k in rest else "")
            for k, v in r["ratios"].items()) + f" | {speedup} |")
    lines += ["", "Lightning loop vs a bare PyTorch loop over the same module and DataLoader, and the step alone on "
              "one fixed batch (median seconds per iteration):", "",
              "| config | Lightning | bare loop | fixed batch | framework share | data share |",
              "|---|---|---|---|---|---|"]
    for r in small.get("lightning_overhead", []):
        t = r["seconds_per_step"]
        lines.append(f"| {r['config']} | {t['lightning'] * 1e3:.1f} ms | {t['bare'] * 1e3:.1f} ms | "
                     f"{t['fixed batch'] * 1e3:.1f} ms | {r['framework_share']:.0%} | {r['data_share']:.0%} |")
    for name, err in small.get("errors", {}).items():
        lines.append(f"| {name} | not run: {err[:100]} | | | | |")
    prof = small.get("profile")
    if prof:
        lines += ["", f"cProfile of {prof['steps']} Lightning steps ({prof['config']}), own time by area: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in prof["share_by_area"].items()) + "; top functions:", "",
                  "| function | calls | own s |", "|---|---|---|"]
        lines += [f"| `{f['function']}` | {f['calls']} | {f['own_s']:.3f} |" for f in prof["top"][:12]]
    return lines + [""]


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    training = results.get("training", [])
    if training:
        names = list(training[0]["contenders"])
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            axes[0].bar([j + i * width for j in range(len(training))],
                        [r["contenders"][name]["tokens_per_s"] for r in training], width, label=name)
        axes[0].set_xticks([j + 0.4 - width / 2 for j in range(len(training))])
        axes[0].set_xticklabels([r["config"].replace(" B", "\nB").replace(" drop", "\ndrop") for r in training],
                                fontsize=6)
        axes[0].set_ylabel("training tokens/s (fp32)")
        axes[0].legend(fontsize=7)
        axes[0].set_title("training step throughput")
    act = results.get("act_skip", [])
    if act:
        axes[1].plot([r["halted_share"] for r in act], [r["speedup"] for r in act], "o-", label="skip halted")
        axes[1].axhline(1.5, ls="--", c="gray", label="target at 0.5")
        axes[1].set_xlabel("share of halted positions")
        axes[1].set_ylabel("speedup vs computing all")
        axes[1].legend(fontsize=7)
        axes[1].set_title("ACT: one shared-layer application")
    dec = results.get("decoding", [])
    if dec:
        labels = [f"{r['model']}\n{r['out_tokens']} tok" for r in dec]
        axes[2].bar([j - 0.2 for j in range(len(dec))], [r["greedy_cached_over_uncached"] for r in dec], 0.4,
                    label="greedy")
        axes[2].bar([j + 0.2 for j in range(len(dec))], [r["beam_cached_over_uncached"] for r in dec], 0.4,
                    label="beam")
        axes[2].axhline(5, ls="--", c="gray", label="target (greedy, 256 tok)")
        axes[2].set_xticks(range(len(dec)))
        axes[2].set_xticklabels(labels, fontsize=6)
        axes[2].set_ylabel("cached / uncached speed")
        axes[2].legend(fontsize=7)
        axes[2].set_title("decoding")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
