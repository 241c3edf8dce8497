"""``make demo``: a short CPU run of the algorithmic copy task, Transformer vs Universal Transformer, and a table.

Trains each model for a few hundred steps on copy inputs of length <= 20 (random position offsets, as in the UT
paper §3.3) and tests on inputs of exactly 40 symbols: twice the training length, so the table shows length
generalisation, not memorisation. About 1-2 minutes per model on 2 CPU cores. Runs are tracked with W&B OFFLINE
(``outputs/demo/...``; nothing waits on the network) with attention maps of a fixed validation example.

    python -m experiments.demo [--steps 400]
"""

from __future__ import annotations

import argparse
import time

from experiments.run_training import fit_and_test

CONFIGS = {"Transformer": "experiments/ut_paper/configs/algorithmic_transformer.yaml",
           "Universal Transformer": "experiments/ut_paper/configs/algorithmic_ut.yaml"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400, help="training steps per model")
    p.add_argument("--out", default="outputs/demo", help="logs, checkpoints and results")
    args = p.parse_args(argv)
    warmup = max(args.steps // 4, 1)
    common = [f"--trainer.max_steps={args.steps}", f"--trainer.val_check_interval={args.steps}",
              "--trainer.limit_val_batches=1", "--data.init_args.task=copy", "--data.init_args.train_max_len=20",
              "--data.init_args.eval_max_len=40", "--data.init_args.val_size=16", "--data.init_args.test_size=64",
              f"--model.init_args.optimizer.warmup_steps={warmup}",
              f"--model.init_args.optimizer.lr_scale={3e-3 * 64**0.5 * warmup**0.5:.4g}",
              "--run.experiment=demo", f"--run.save_dir={args.out}"]
    rows = []
    for name, config in CONFIGS.items():
        start = time.time()
        print(f"[demo] training {name} for {args.steps} steps ...", flush=True)
        res = fit_and_test(config, common, f"{args.out}/{name.split()[0].lower()}.json")
        test = res["metrics"]["test"]
        rows.append((name, res["params"], test["token_acc"], test["seq_acc"], test["loss"], time.time() - start))
    print("\nCopy task: trained on lengths <= 20, tested on length 40 (teacher-forced accuracies)\n")
    print("| model | params | char-acc | seq-acc | test loss | seconds |")
    print("|---|---|---|---|---|---|")
    for name, params, ch, sq, loss, secs in rows:
        print(f"| {name} | {params:,} | {ch:.3f} | {sq:.3f} | {loss:.3f} | {secs:.0f} |")
    print(f"\nW&B offline runs, attention maps and checkpoints: {args.out}/demo/ (sync with `wandb sync`).")


if __name__ == "__main__":
    main()
