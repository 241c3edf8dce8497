"""Write every WikiSum run config (Liu et al. 2018 Tables 3-4, the L sweep, the demo): one LightningCLI YAML per run.

The runs are listed once, here (:data:`RUNS`); ``python -m experiments.wikisum.configs.generate`` writes
``configs/<experiment>/<run>.yaml`` (committed, so a reader opens the one file of a run, e.g.
``configs/table4/t_dmca_l11000.yaml``), and ``--check`` exits non-zero when a committed file differs from what this
script writes (the test suite runs the same check). Every file runs as it is::

    ut-train fit --config experiments/wikisum/configs/table4/t_dmca_l11000.yaml

Shared by every run (CPU scale on the embedded enwiki sample; raise them in a copy for a GPU and a full dump):
d_model 128, 4 heads, ffn 512, dropout 0.1; Adam with t2t's inverse-sqrt schedule (100 warmup steps); label
smoothing 0.1; a step budget (equal steps for every model of a table, the paper's protocol); the trainer's
accelerator, devices, strategy and precision pick what the machine has (:data:`PRECISION`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent
EXPERIMENTS = ("table3", "table4", "lsweep", "demo")
DATA_DIR = "data/wikisum_sample"  # relative to the repository root, where ut-train runs
PRECISION = "auto"  # ut.precision: bf16-mixed where the CPU / GPU runs bf16 natively, 32-true otherwise

SIZE = {"d_model": 128, "n_heads": 4, "d_ff": 512, "dropout": 0.1}
OPTIMIZER = {"schedule": "inverse_sqrt", "lr_scale": 2.0, "warmup_steps": 100, "beta1": 0.9, "beta2": 0.997,
             "eps": 1.0e-9}

# model family -> (LightningModule, registry name, model_config beyond SIZE, data format)
FAMILIES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "T-ED": ("ut.lit.Seq2SeqModule", "transformer", {"n_encoder_layers": 2, "n_decoder_layers": 2}, "seq2seq"),
    "T-D": ("ut.lit.LanguageModelModule", "decoder_only", {"n_layers": 4}, "lm"),
    "T-DMCA": ("ut.lit.LanguageModelModule", "decoder_only", {"layer_pattern": "locm/redm/locm/redm"}, "lm"),
    "T-DMCA-MoE": ("ut.lit.LanguageModelModule", "decoder_only",
                   {"layer_pattern": "locm/redm/locm-moe/redm", "n_experts": 8}, "lm"),
    "UT fixed": ("ut.lit.Seq2SeqModule", "universal", {"n_steps": 2, "recurrence": "fixed"}, "seq2seq"),
    "UT ACT": ("ut.lit.Seq2SeqModule", "universal", {"n_steps": 2, "recurrence": "act", "act_max_steps": 4},
               "seq2seq"),
    "UT-DMCA": ("ut.lit.LanguageModelModule", "universal_decoder_only", {"layer_pattern": "locm/redm", "n_steps": 2},
                "lm"),
}

COMMENTS = {  # YAML comments, by dotted key
    "seed_everything": "seeds weights, dropout and the training-data order",
    "run": "run bookkeeping (ut.lit.run_config.RunConfig)",
    "run.experiment": "W&B group; the run folder is <save_dir>/<experiment>/<name>",
    "run.logger": "wandb | csv | tensorboard | none",
    "run.online": "W&B: true online, false offline, null: $WANDB_MODE if set, else offline",
    "trainer": "lightning.Trainer arguments",
    "trainer.accelerator": "auto: cuda where present, else cpu",
    "trainer.devices": "GPUs / processes; N GPUs: --trainer.devices N --trainer.strategy ddp",
    "trainer.precision": "auto: bf16-mixed where the CPU / GPU runs bf16 natively, else 32-true (ut.precision)",
    "trainer.max_steps": "the step budget: equal steps for every model of the experiment",
    "trainer.val_check_interval": "validate (val log-ppl) every n training steps: the learning curve",
    "trainer.check_val_every_n_epoch": "null: val_check_interval counts steps across epochs",
    "trainer.limit_val_batches": "0: no validation",
    "trainer.callbacks": "run record (s/step, curves, memory), evaluation, pictures",
    "model": "the LightningModule",
    "model.init_args.model_config": "sizes from the data (vocabulary, positions) are filled in by the DataModule",
    "data": "the LightningDataModule (a python -m data_prep build)",
    "data.init_args.data_dir": "relative to the repository root; any `python -m data_prep build` output",
    "data.init_args.input_length": "L: first L tokens of the ranked paragraphs",
    "data.init_args.target_length": "target tokens, EOS included",
    "data.init_args.train_min_input_tokens": "only training examples with >= L input tokens (timed steps see L)",
    "run.name": "run name (the run folder)",
    "run.save_dir": "root folder of logs and checkpoints",
    "run.project": "W&B project",
    "run.tags": "W&B tags",
    "trainer.strategy": "auto | ddp | fsdp",
    "trainer.max_epochs": "-1: max_steps ends the run",
    "trainer.gradient_clip_val": "clip the global gradient norm",
    "trainer.log_every_n_steps": "how often training metrics are logged",
    "trainer.num_sanity_val_steps": "no validation pass before training",
    "model.class_path": "the training module of the model family",
    "model.init_args": "constructor arguments",
    "model.init_args.model_name": "ut.models registry name",
    "model.init_args.label_smoothing": "Vaswani et al. 2017: 0.1",
    "model.init_args.optimizer": "ut.optim.OptimizerConfig: Adam + warmup / inverse-sqrt schedule",
    "data.class_path": "WikiSum batches: seq2seq (T-ED, UT) or [input; sep; target] (decoder-only)",
    "data.init_args": "constructor arguments",
    "data.init_args.format": "seq2seq | lm",
    "data.init_args.extractor": "the ranker whose ranked paragraphs form the input (Table 3's rows)",
    "data.init_args.batch_size": "training batch",
    "data.init_args.eval_batch_size": "evaluation batch",
    "data.init_args.seed": "data order seed",
    "data.init_args.num_workers": "DataLoader workers",
}
LEAF_COMMENTS = {  # keys whose comment does not depend on where they stand (optimizer and model_config fields)
    "schedule": "lr = c * d^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al.; t2t)",
    "lr_scale": "c (t2t 2.0)",
    "warmup_steps": "linear warmup steps",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2 (t2t 0.997)",
    "eps": "Adam epsilon",
    "d_model": "width",
    "n_heads": "attention heads",
    "d_ff": "feed-forward width",
    "dropout": "residual / embedding / feed-forward dropout",
    "n_layers": "decoder layers",
    "n_encoder_layers": "encoder layers",
    "n_decoder_layers": "decoder layers",
    "layer_pattern": "layer kinds (t2t names): locm = local attention, redm = memory-compressed; -moe: MoE feed-forward",  # noqa: E501
    "n_experts": "mixture-of-experts feed-forward experts",
    "n_steps": "T: applications of the shared layer",
    "recurrence": "fixed T steps or act (adaptive computation time)",
    "act_max_steps": "most ACT steps a position may run",
}
CALLBACK_COMMENTS = {
    "ut.lit.callbacks.RunRecordCallback": "s/step, training / validation log-ppl curves, peak memory, precision",
    "ut.lit.callbacks.SummarizationEvalCallback": "log-ppl, beam decoding and ROUGE at the end of fit",
    "ut.lit.callbacks.AttentionMapCallback": "attention maps per layer and head",
    "ut.lit.callbacks.PonderMapCallback": "ACT ponder time per position",
}


def comment(path: str) -> str:
    """The YAML comment of the key at dotted ``path``; every key has one (a test checks every config line)."""
    note = COMMENTS.get(path) or LEAF_COMMENTS.get(path.rsplit(".", 1)[-1])
    if note is None:
        raise KeyError(f"no comment for config key {path!r}: add it to COMMENTS or LEAF_COMMENTS")
    return note


@dataclass
class Run:
    """One run: an experiment's row."""

    experiment: str  # table3 | table4 | lsweep | demo
    label: str  # the row label, e.g. "T-DMCA L=11000"
    family: str  # a key of FAMILIES
    input_length: int = 500
    extractor: str = "tfidf"
    max_steps: int = 1000
    val_every: int = 100
    batch_size: int = 4
    eval: dict[str, Any] | None = field(default_factory=lambda: {"beam_size": 4, "alpha": 0.6, "max_len": 128})
    attention_maps: bool = True
    data: dict[str, Any] = field(default_factory=dict)  # more WikiSumDataModule arguments

    @property
    def name(self) -> str:
        return slug(self.label)

    @property
    def path(self) -> Path:
        return CONFIG_DIR / self.experiment / f"{self.name}.yaml"


def slug(label: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in label.replace("=", ""))
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def _runs() -> list[Run]:
    runs = [Run("table3", f"T-ED {name}", "T-ED", extractor=ex)
            for name, ex in (("identity", "identity"), ("tf-idf", "tfidf"), ("TextRank", "textrank"),
                             ("SumBasic", "sumbasic"), ("cheating", "cheating"))]
    for family, L in (("T-ED", 500), ("T-D", 2000), ("T-DMCA", 2000), ("T-DMCA", 11000), ("T-DMCA-MoE", 2000),
                      ("UT fixed", 500), ("UT ACT", 500), ("UT-DMCA", 2000)):
        lm = FAMILIES[family][3] == "lm"
        runs.append(Run("table4", f"{family} L={L}", family, input_length=L, batch_size=1 if lm else 4,
                        attention_maps=L <= 2000))
    for family in ("T-ED", "T-D", "T-DMCA"):
        for L in (100, 500, 2000, 4000, 11000):
            runs.append(Run("lsweep", f"{family} L={L}", family, input_length=L, max_steps=300, val_every=300,
                            batch_size=1, eval=None, attention_maps=False, data={"train_min_input_tokens": L}))
    for family, L, bs in (("T-ED", 500, 4), ("T-DMCA", 1000, 2), ("UT ACT", 500, 4)):
        runs.append(Run("demo", f"{family} L={L}", family, input_length=L, max_steps=160, val_every=32,
                        batch_size=bs, eval={"beam_size": 1, "alpha": 0.6, "max_len": 40, "max_examples": 2}))
    return runs


RUNS: list[Run] = _runs()


def model_config(family: str) -> dict[str, Any]:
    """SIZE (the keys the model has) + the family's own settings."""
    from ut.models import model_classes

    _, name, own, _ = FAMILIES[family]
    fields = {f.name for f in dataclasses.fields(model_classes(name)[1])}
    return {**{k: v for k, v in SIZE.items() if k in fields}, **own}


def config(run: Run) -> dict[str, Any]:
    """The LightningCLI config of ``run``."""
    module, model_name, _, fmt = FAMILIES[run.family]
    callbacks: list[dict[str, Any]] = [{"class_path": "ut.lit.callbacks.RunRecordCallback"}]
    if run.eval:
        callbacks.append({"class_path": "ut.lit.callbacks.SummarizationEvalCallback",
                          "init_args": {"split": "test", **run.eval}})
    if run.attention_maps:
        callbacks.append({"class_path": "ut.lit.callbacks.AttentionMapCallback",
                          "init_args": {"n_examples": 1, "max_tokens": 32}})
    if FAMILIES[run.family][2].get("recurrence") == "act":
        callbacks.append({"class_path": "ut.lit.callbacks.PonderMapCallback",
                          "init_args": {"n_examples": 2, "max_tokens": 48}})
    data = {"data_dir": DATA_DIR, "format": fmt, "extractor": run.extractor, "input_length": run.input_length,
            "target_length": 128, "batch_size": run.batch_size, "eval_batch_size": run.batch_size,
            **run.data, "seed": 0, "num_workers": 0}
    return {
        "seed_everything": 0,
        "run": {"experiment": f"wikisum/{run.experiment}", "name": run.name, "save_dir": "outputs",
                "logger": "wandb", "online": None, "project": "universal-transformers",
                "tags": ["wikisum", run.experiment]},
        "trainer": {"accelerator": "auto", "devices": 1, "strategy": "auto", "precision": PRECISION,
                    "max_steps": run.max_steps, "max_epochs": -1, "val_check_interval": run.val_every,
                    "check_val_every_n_epoch": None, "gradient_clip_val": 1.0, "log_every_n_steps": 10,
                    "num_sanity_val_steps": 0, "callbacks": callbacks},
        "model": {"class_path": module,
                  "init_args": {"model_name": model_name, "label_smoothing": 0.1, "optimizer": dict(OPTIMIZER),
                                "model_config": model_config(run.family)}},
        "data": {"class_path": "ut.data.wikisum.WikiSumDataModule", "init_args": data},
    }


def _scalar(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def _emit(value: Any, key_path: str, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for k, v in value.items():
        path = f"{key_path}.{k}" if key_path else k
        note = f"  # {comment(path)}"
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{k}:{note}")
            _emit(v, path, indent + 2, lines)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):  # the callbacks
            lines.append(f"{pad}{k}:{note}")
            for item in v:
                first, *rest = item.items()
                lines.append(f"{pad}  - {first[0]}: {_scalar(first[1])}  # {CALLBACK_COMMENTS[first[1]]}")
                for rk, rv in rest:
                    lines.append(f"{pad}    {rk}: {_scalar(rv)}  # constructor arguments")
        else:
            lines.append(f"{pad}{k}: {_scalar(v)}{note}")


def render(run: Run) -> str:
    """The YAML text of ``run``: a header saying what it is and how to run it, then the commented config."""
    rel = run.path.relative_to(CONFIG_DIR.parents[2])
    head = [f"# WikiSum {run.experiment}: {run.label} (Liu et al. 2018, \"Generating Wikipedia by Summarizing Long "
            "Sequences\"), CPU scale.",
            f"# Run: ut-train fit --config {rel}",
            "# Generated by experiments/wikisum/configs/generate.py (edit RUNS there, then run it): do not edit."]
    lines: list[str] = []
    _emit(config(run), "", 0, lines)
    return "\n".join(head + lines) + "\n"


def expected_files() -> dict[Path, str]:
    return {run.path: render(run) for run in RUNS}


def stale_files() -> list[str]:
    """Committed configs that differ from the generator's output, are missing, or are not generated."""
    want = expected_files()
    bad = [str(p.relative_to(CONFIG_DIR)) for p, text in want.items() if not p.is_file() or p.read_text() != text]
    have = {p for e in EXPERIMENTS for p in (CONFIG_DIR / e).glob("*.yaml")}
    bad += [f"{p.relative_to(CONFIG_DIR)} (not generated)" for p in sorted(have - set(want))]
    return bad


def runs_of(experiment: str) -> list[Run]:
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; one of {EXPERIMENTS}")
    return [r for r in RUNS if r.experiment == experiment]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare the committed files with the output")
    args = p.parse_args(argv)
    if args.check:
        bad = stale_files()
        for b in bad:
            print(f"stale: {b}", file=sys.stderr)
        return 1 if bad else 0
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(RUNS)} configs under {CONFIG_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
