"""Evaluating a trained UT's FINAL checkpoint for the depth experiments: quality, executed steps, FLOPs per token.

Copy (``ut.data.algorithmic``): the test sets of :data:`experiments.ut_paper.run_algorithmic.EVAL_SETS` (lengths
U[1, 40], the training distribution, and U[1, 400], t2t's dev set; data seed 0), evaluated as
``run_algorithmic.add_eval_metrics`` does (``Trainer.test`` of the loaded :class:`ut.lit.Seq2SeqModule`:
teacher-forced char-acc / seq-acc, and greedy-decoded ones when asked), on a module whose depth may have been
changed first (:mod:`experiments.depth.knobs`).

bAbI (``ut.data.babi``, fact layout): the test stories of the run's task, by the model's own forward pass, with
the error also split at the median number of facts of the test stories (short: at most the median; long: more),
which makes "longer inputs" a question on bAbI too.

Executed steps: the mean over real tokens of the steps each token ran (``ModelOutput.n_updates``; logged as
``n_updates_<stream>``), or T at fixed depth. FLOPs: the model-FLOPs convention of :mod:`benchmarks.flops` (matrix
products only, 2 per multiply-add, forward pass), its per-layer counts times the mean executed steps, at the
evaluation set's MEAN lengths (named approximation: the attention term of a set of mixed lengths is E[L^2], not
E[L]^2); the halting units (one d-wide dot product per token and step) and the bAbI fact encoder (element-wise)
are not counted.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmarks.flops import decoder_layer_macs, encoder_layer_macs, transition_macs
from experiments.ablations.runner import REPO

OUTPUTS = REPO / "outputs"  # the configs' run.save_dir, relative to the repository root where the runner runs them


def checkpoint_path(result: dict, experiment: str, outputs: Path = OUTPUTS) -> Path:
    """The final checkpoint (``last.ckpt``) of the run of ``result`` (a runner results dict) in ``experiment``."""
    from ut.lit.run_config import RunConfig

    run_dir = RunConfig(experiment=experiment, name=result["run_id"], save_dir=str(outputs)).run_dir(
        result["model_name"], result["seed"])
    return run_dir / "checkpoints" / "last.ckpt"


def load_module(path: Path, task: str):
    """The LightningModule of a checkpoint, on the CPU, in eval mode: seq2seq for ``copy``, fact QA for bAbI."""
    if task == "copy":
        from ut.lit import Seq2SeqModule as cls
    else:
        from ut.lit.fact_qa import FactQAModule as cls
    return cls.load_from_checkpoint(path, map_location="cpu").eval()


def fixed_steps(module) -> int | None:
    """T of a fixed-recurrence model (None under a halting loop)."""
    from experiments.depth.knobs import universal_stacks

    stacks = universal_stacks(module.model)
    return None if any(s.halting is not None for s in stacks) else stacks[0].n_steps


# ------------------------------------------------------------------------------------------------------------- copy
def copy_eval(module, key: str, size: int, eval_batch_size: int = 32, decode: bool = False,
              task: str = "copy") -> dict:
    """Metrics of ``module`` on the copy test set ``key`` of ``run_algorithmic.EVAL_SETS`` (``size`` examples):
    the module's test metrics, plus ``steps_encoder`` / ``steps_decoder`` (mean executed steps per token),
    ``mean_src_len`` / ``mean_tgt_len`` and ``seconds``."""
    import lightning as L
    import torch

    from experiments.ut_paper.run_algorithmic import EVAL_SETS
    from ut.data.algorithmic import AlgorithmicDataModule

    if key not in EVAL_SETS:
        raise ValueError(f"unknown copy test set {key!r}; choose one of {list(EVAL_SETS)}")
    _, length, kind = EVAL_SETS[key]
    start = time.time()
    data = AlgorithmicDataModule(task=task, train_max_len=min(length, 40), eval_max_len=length, eval_length=kind,
                                 test_size=size, eval_batch_size=eval_batch_size)
    module.decode_on_test = decode
    torch.manual_seed(0)  # the UT's random start index draws (t2t's position policy) at evaluation
    L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(module, data, verbose=False)
    m = dict(module.last_eval_metrics["test"])
    steps = fixed_steps(module)
    for stream in ("encoder", "decoder"):
        m[f"steps_{stream}"] = float(steps) if steps is not None else m[f"n_updates_{stream}"]
    m["mean_src_len"] = statistics.fmean(len(e.src) for e in data.test_set)
    m["mean_tgt_len"] = statistics.fmean(len(e.tgt) + 1 for e in data.test_set)  # + EOS (BOS on the input side)
    m["seconds"] = round(time.time() - start, 1)
    return m


def seq2seq_flops_per_token(d_model: int, d_ff: float, vocab: int, steps_encoder: float, steps_decoder: float,
                            src_len: float, tgt_len: float) -> float:
    """Forward model FLOPs per TARGET token of a UT encoder-decoder that runs ``steps_*`` steps per token (mean)
    over a source of ``src_len`` and a target of ``tgt_len`` tokens (module docstring)."""
    macs = (steps_encoder * encoder_layer_macs(d_model, d_ff, src_len)
            + steps_decoder * decoder_layer_macs(d_model, d_ff, tgt_len, src_len) + tgt_len * d_model * vocab)
    return 2 * macs / tgt_len


def transition_width(model_config: dict) -> float:
    """The dense FFN width with the multiply-adds per token of a run's transition (``benchmarks.flops.transition_macs
    / 2 d``): ``d_ff`` for ``ffn``; for the sparse UT's ``moe``, ``moe_top_k * d_ff`` (its active experts) plus
    ``n_experts / 2`` (the router), so that the layer formulas of :mod:`benchmarks.flops` count its active FLOPs."""
    d = model_config["d_model"]
    macs = transition_macs(model_config.get("transition") or "ffn", d, model_config["d_ff"],
                           model_config.get("n_experts") or 1, model_config.get("moe_top_k") or 1)
    return macs / (2 * d)


def copy_flops(model_config: dict, m: dict, vocab: int = 16) -> float | None:
    """:func:`seq2seq_flops_per_token` of a run's model config on one copy test set's metrics ``m``."""
    need = ("steps_encoder", "steps_decoder", "mean_src_len", "mean_tgt_len")
    if any(m.get(k) is None for k in need):
        return None
    return seq2seq_flops_per_token(model_config["d_model"], transition_width(model_config),
                                   model_config.get("tgt_vocab_size") or vocab, *(m[k] for k in need))


# ------------------------------------------------------------------------------------------------------------ bAbI
def babi_eval(module, datamodule) -> dict:
    """Error of the fact-QA ``module`` on ``datamodule``'s test stories, overall and split at the median number of
    facts (``error_short``: at most ``median_facts``; ``error_long``: more), ``steps_encoder`` (mean executed
    steps per item: the question and the facts), ``mean_items`` and ``seconds``. Errors are fractions."""
    import torch

    start = time.time()
    datamodule.setup("test")
    correct, n_facts, steps_sum, items_sum = [], [], 0.0, 0.0
    fixed = fixed_steps(module)
    module.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            out = module.forward_batch(batch)
            correct += (out.logits.argmax(-1) == batch["label"]).tolist()
            n_facts += batch["fact_mask"].sum(1).tolist()
            mask = batch["src_mask"].bool()
            items_sum += float(mask.sum())
            n = out.n_updates.get("encoder")
            steps_sum += float(fixed) * float(mask.sum()) if n is None else float((n.float() * mask).sum())
    if not correct:
        raise ValueError("the bAbI test set is empty")
    median = statistics.median(n_facts)
    short = [c for c, f in zip(correct, n_facts, strict=True) if f <= median]
    long = [c for c, f in zip(correct, n_facts, strict=True) if f > median]
    return {"error": 1 - statistics.fmean(correct), "acc": statistics.fmean(correct),
            "error_short": 1 - statistics.fmean(short) if short else None,
            "error_long": 1 - statistics.fmean(long) if long else None,
            "median_facts": median, "n_short": len(short), "n_long": len(long), "n": len(correct),
            "steps_encoder": steps_sum / items_sum, "mean_items": items_sum / len(correct),
            "seconds": round(time.time() - start, 1)}


def encoder_flops_per_item(d_model: int, d_ff: float, steps: float, n_items: float) -> float:
    """Forward model FLOPs per item (question or fact) of a UT encoder over ``n_items`` items that runs ``steps``
    steps per item (mean; module docstring)."""
    return 2 * steps * encoder_layer_macs(d_model, d_ff, n_items) / n_items


def babi_flops(model_config: dict, m: dict) -> float | None:
    """:func:`encoder_flops_per_item` of a run's model config on :func:`babi_eval`'s metrics ``m``."""
    if m.get("steps_encoder") is None or m.get("mean_items") is None:
        return None
    return encoder_flops_per_item(model_config["d_model"], transition_width(model_config), m["steps_encoder"],
                                  m["mean_items"])


def babi_datamodule(result: dict):
    """The run's BabiDataModule (its config file and data overrides; ``run_babi``'s)."""
    from experiments.ut_paper.run_babi import _run_datamodule

    return _run_datamodule(result)


# ------------------------------------------------------------------------------------------------------- parallel
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def pool_map(fn: Callable, items: Iterable, jobs: int = 1) -> Iterator:
    """``fn(item)`` for every item, in ``jobs`` spawned processes (one thread each) or in this one (``jobs`` <= 1),
    yielded as they finish; ``fn`` must be a module-level function."""
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        _init_worker()
        for item in items:
            yield fn(item)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker) as pool:
        for fut in as_completed([pool.submit(fn, item) for item in items]):
            yield fut.result()
