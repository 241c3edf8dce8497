"""The suite's targets: each a threshold on a measured row, met or missed, with the measured value and the margin.

:func:`evaluate_targets` reads the results dict of ``benchmarks/run_all.py``; ``benchmarks/report.py`` writes the
table.
"""

from __future__ import annotations


def _target(name: str, required: str, measured: str, met: bool | None, margin: str = "") -> dict:
    return {"target": name, "required": required, "measured": measured, "met": met, "margin": margin}


def _ratio_targets(training: list[dict], peer: str, dropout: float, need: float) -> dict | None:
    rows = [r for r in training if r["dims"]["dropout"] == dropout and f"ours / {peer}" in r["ratios"]]
    if not rows:
        return None
    ratios = {r["config"]: r["ratios"][f"ours / {peer}"] for r in rows}
    worst = min(ratios.values())
    measured = ", ".join(f"{c.split(' drop')[0]}: {v:.2f}x" for c, v in ratios.items())
    return _target(f"ours >= {need}x {peer} tokens/s, dropout {dropout:g}", f">= {need:.2f}x in every config",
                   measured, worst >= need, f"worst {worst:.2f}x ({(worst / need - 1) * 100:+.0f}% vs target)")


def _worst_ratio_target(name: str, need: float, ratios: dict[str, float], note: str = "") -> dict | None:
    if not ratios:
        return None
    worst = min(ratios.values())
    return _target(name, f">= {need:.2f}x in every config", ", ".join(f"{c}: {v:.2f}x" for c, v in ratios.items()),
                   worst >= need, f"worst {worst:.2f}x ({(worst / need - 1) * 100:+.0f}% vs target)" + note)


def _xtransformers_targets(results: dict) -> list[dict]:
    targets = []
    rows = results.get("xtransformers_training", [])
    for key, what in (("ours / x-transformers", "ours"), ("ours UT / x-transformers (tied layers)", "our UT")):
        ratios = {r["config"].split(" drop")[0]: r["ratios"][key] for r in rows if key in r.get("ratios", {})}
        t = _worst_ratio_target(f"{what} >= 1.1x {key.split(' / ')[1]} training tokens/s at equal dims", 1.1, ratios)
        if t:
            targets.append(t)
    dec = [r for r in results.get("xtransformers_decoding", []) if "skipped" not in r]
    if dec:
        longest = max(r["out_tokens"] for r in dec)
        ratios = {r["config"]: r["ours / x-transformers"] for r in dec if r["out_tokens"] == longest}
        t = _worst_ratio_target(f"cached greedy decoding >= 1.2x x-transformers' cached generation at {longest} "
                                "tokens", 1.2, ratios,
                                "" if longest >= 256 else " (quick run: fewer tokens than the target's 256)")
        targets.append(t)
    small = results.get("small_models", {})
    overhead = {r["config"]: r["framework_share"] for r in small.get("lightning_overhead", [])}
    if overhead:
        worst = max(overhead.values())
        targets.append(_target("Lightning overhead <= 10% of a training step (small-model configs)", "<= 10%",
                               ", ".join(f"{c}: {v:.0%}" for c, v in overhead.items()), worst <= 0.10,
                               f"worst {worst:.0%} ({(0.10 - worst) * 100:+.0f} points)"))
    ratios = {r["config"]: v for r in small.get("peer_steps", []) for k, v in r.get("ratios", {}).items()
              if k.startswith("ours / x-transformers")}
    t = _worst_ratio_target("small-model configs: ours >= 1.2x x-transformers (step time)", 1.2, ratios)
    if t:
        targets.append(t)
    return targets


def evaluate_targets(results: dict) -> list[dict]:
    """The suite's targets, each met / missed with the measured value and the margin."""
    targets = []
    training = results.get("training", [])
    for peer, dropout, need in (("HF BART", 0.1, 1.15), ("HF BART", 0.0, 1.0),
                                ("torch.nn.Transformer", 0.1, 1.3), ("torch.nn.Transformer", 0.0, 1.3)):
        t = _ratio_targets(training, peer, dropout, need)
        if t:
            targets.append(t)
    d512 = [r for r in training if r["dims"]["d_model"] == 512 and r["dims"]["dropout"] == 0.0]
    if d512:
        mfus = {r["config"]: r["contenders"]["ours"]["mfu_fp32"] for r in d512}
        best = max(mfus.values())
        targets.append(_target(
            "MFU >= 70% of the measured fp32 peak at d=512, dropout 0", ">= 70%",
            ", ".join(f"{c.split(' drop')[0]}: {v:.0%}" for c, v in mfus.items()), best >= 0.70,
            f"best {best:.0%} ({(best - 0.70) * 100:+.0f} points)"))
    targets += _xtransformers_targets(results)
    if "bf16" in results and "skipped" not in results["bf16"]:
        b = results["bf16"]
        s = b["speedup_bf16_over_fp32"]
        targets.append(_target("bf16 autocast >= 1.8x fp32 at d=512", ">= 1.8x", f"{s:.2f}x ({b['config']})",
                               s >= 1.8, f"{(s / 1.8 - 1) * 100:+.0f}%"))
        c = b.get("loss_curve_check")
        if c:
            targets.append(_target(
                "bf16 loss curve = fp32 within noise (short run)", "|end difference| <= max(fp32 noise, 1%)",
                f"end fp32 {c['end_fp32']:.4f} vs bf16 {c['end_bf16']:.4f} (noise {c['fp32_end_noise']:.4f}, "
                f"start {c['start']:.3f}, {c['steps']} steps)", bool(c["within_noise"])))
    mem = results.get("attention_dropout_memory", [])
    longest = max((r["length"] for r in mem if "error" not in r), default=None)
    if longest:
        by_mode = {r["mode"]: r for r in mem if r["length"] == longest and "error" not in r}
        if "sdpa_p0" in by_mode and "ours_dropout" in by_mode:
            ratio = by_mode["ours_dropout"]["peak_mb"] / by_mode["sdpa_p0"]["peak_mb"]
            targets.append(_target(
                f"attention dropout memory within 2x of dropout 0 at L={longest}", "<= 2.0x",
                f"{by_mode['ours_dropout']['peak_mb']:.0f} MB vs {by_mode['sdpa_p0']['peak_mb']:.0f} MB = {ratio:.2f}x",
                ratio <= 2.0, f"{(2.0 - ratio):+.2f}x headroom"))
    dec = results.get("decoding", [])
    if dec:
        longest_out = max(r["out_tokens"] for r in dec)
        ratios = {r["model"]: r["greedy_cached_over_uncached"] for r in dec if r["out_tokens"] == longest_out}
        worst = min(ratios.values())
        targets.append(_target(
            f"cached greedy >= 10x uncached at {longest_out} output tokens (incl. UT)", ">= 10x for every model",
            ", ".join(f"{m}: {v:.1f}x" for m, v in ratios.items()), worst >= 10.0,
            f"worst {worst:.1f}x" + ("" if longest_out >= 256 else " (quick run: fewer tokens than the target's 256)")))
    act = results.get("act_skip", [])
    half = [r for r in act if abs(r["halted_share"] - 0.5) < 1e-9]
    if half:
        s = half[0]["speedup"]
        targets.append(_target("ACT skipping >= 1.5x per layer application when half have halted", ">= 1.5x",
                               f"{s:.2f}x", s >= 1.5, f"{(s / 1.5 - 1) * 100:+.0f}%"))
    return targets
