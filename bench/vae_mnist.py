"""Benchmark: the M1 VAE / IWAE on dynamically binarized MNIST against Burda et al. (2016).

Runs :func:`pipelines.vae.run` on the real MNIST data (or ``--data``) and prints one pandas row: test
ELBO, test NLL (-log p(x), 5,000 importance samples), the paper's anchor, mean epoch
time, wall time and device. The row is also appended to ``OUT/bench.csv``.

Examples::

    python bench/vae_mnist.py --epochs 1 --eval-limit 500 --threads 1      # smoke test
    python bench/vae_mnist.py --epochs 300 --train-on-valid --device cuda   # long run
    python bench/vae_mnist.py --epochs 300 --objective iwae --k 50 --train-on-valid
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from pipelines.vae import VAERunConfig, run
from vaecore.errors import VaelabError
from vaecore.runtime import set_threads

# Burda et al. 2016, Table 1: one stochastic layer (z = 50), two deterministic hidden layers of 500 units,
# trained for 3,280 epochs: test NLL in nats (VAE k = 1, IWAE k = 50).
ANCHORS = {("elbo", 1): 86.76, ("iwae", 50): 84.78}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="mnist", help="mnist | fixture | PATH (.npz or IDX directory)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 1 (--resume: the run's own total)")
    parser.add_argument("--objective", choices=("elbo", "iwae"), default="elbo")
    parser.add_argument("--k", type=int, default=None, help="default: 1 for elbo, 50 for iwae")
    parser.add_argument("--lr-schedule", choices=("exponential", "burda"), default="exponential")
    parser.add_argument("--lr-decay", type=float, default=1.0)
    parser.add_argument("--train-on-valid", action="store_true", help="train on 60k digits as Burda et al.")
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--eval-limit", type=int, default=None, help="log p(x) on the first N test digits")
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (e.g. 1 on a shared machine)")
    parser.add_argument("--out", default="runs/bench_vae_mnist")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    k = args.k if args.k is not None else (50 if args.objective == "iwae" else 1)
    # One run directory per row kind: a 60k-digit run beside a 50k one must not land in (and
    # be refused by) the other's directory. Other changes are refused there by name.
    out = Path(args.out) / f"{args.objective}_k{k}{'_train_valid' if args.train_on_valid else ''}"
    try:
        set_threads(args.threads)
        config = VAERunConfig(
            data=args.data, epochs=1 if args.epochs is None and not args.resume else args.epochs,
            objective=args.objective, k=k, lr_schedule=args.lr_schedule,
            lr_decay=args.lr_decay, train_on_valid=args.train_on_valid, eval_samples=args.eval_samples,
            eval_limit=args.eval_limit, eval_batch_size=args.eval_batch_size, device=args.device, seed=args.seed,
            resume=str(out) if args.resume else None, progress=not args.no_progress,
        )
        metrics = run(config, out)
    except VaelabError as err:  # bad data or settings: one line, as vaelab vae gives it
        parser.error(str(err))
    row = pd.DataFrame([{
        "data": args.data, "objective": args.objective, "k": k, "epochs": metrics["epochs"],
        "train_digits": metrics["n_train"],
        "test_elbo": metrics["test_elbo"], "test_nll": metrics["test_nll"],
        "nll_digits": metrics["n_test_log_px"], "eval_samples": metrics["eval_samples"],
        "burda_nll": ANCHORS.get((args.objective, k)) if args.data == "mnist" else None,  # MNIST's anchor only
        "epoch_seconds": metrics["mean_epoch_seconds"], "wall_seconds": metrics["wall_seconds"],
        "device": metrics["device"], "threads": torch.get_num_threads(),
    }])
    csv = Path(args.out) / "bench.csv"
    row.to_csv(csv, mode="a", header=not csv.exists(), index=False)
    print(row.to_string(index=False))
    return row


if __name__ == "__main__":
    main()
