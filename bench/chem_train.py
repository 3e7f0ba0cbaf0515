"""Benchmark: train the molecule VAE on MOSES, evaluate, print one table against the targets.

Usage (the full run needs a GPU; a CPU run records the largest one that fits)::

    python bench/chem_train.py --max-molecules 1584663 --epochs 30 --device cuda --out runs/bench_chem
    python bench/chem_train.py --max-molecules 2000 --epochs 1 --n-samples 200 --no-fcd --device cpu --out runs/bench_chem_smoke  # smoke
    python bench/chem_train.py --max-molecules 200000 --epochs 3 --batch-size 256 --decoder-layers 1 \
        --kl-warmup-fraction 0.5 --beta 0.2 --n-recon 1000 --device cpu --out runs/bench_chem_cpu  # the CPU runs' settings (BENCHMARKS.md)

Prints (and writes to ``OUT/bench.csv``) reconstruction accuracy on MOSES test, validity,
unique@10k, novelty and FCD/Test of decoded prior samples, next to the targets, with the
device, wall time, training throughput (molecules/s) and decoding throughput.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from chemvae.model import ChemVAEConfig
from pipelines.chem import train
from pipelines.chem_config import ChemEvalConfig, ChemTrainConfig
from pipelines.chem_eval import evaluate
from vaecore.errors import VaelabError
from vaecore.runtime import set_threads

# Targets on MOSES test (the issue's; MOSES CharVAE-level figures).
TARGETS = {
    "smiles": {"recon_accuracy": (">=", 0.90), "validity": (">=", 0.977), "unique@10k": (">=", 0.998),
               "novelty": (">=", 0.70), "FCD/Test": ("<=", 0.10)},
    "selfies": {"recon_accuracy": (">=", 0.90), "validity": (">=", 1.0)},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="moses")
    p.add_argument("--max-molecules", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="default: 30 (--resume: the run's own total)")
    p.add_argument("--representation", default="smiles", choices=("smiles", "selfies"))
    p.add_argument("--encoder", default="gru")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--latent-dim", type=int, default=56)
    p.add_argument("--decoder-hidden", type=int, default=ChemVAEConfig.decoder_hidden)
    p.add_argument("--decoder-layers", type=int, default=ChemVAEConfig.decoder_layers)
    p.add_argument("--kl-warmup-fraction", type=float, default=ChemTrainConfig.kl_warmup_fraction)
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--n-recon", type=int, default=10_000)
    p.add_argument("--sample-method", default="sample", choices=("sample", "greedy"))
    p.add_argument("--no-fcd", action="store_true")
    p.add_argument("--n-jobs", type=int, default=-1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/bench_chem")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    began = time.perf_counter()
    try:
        set_threads(args.threads)
        architecture = ChemVAEConfig(representation=args.representation, encoder=args.encoder,
                                     latent_dim=args.latent_dim, decoder_hidden=args.decoder_hidden,
                                     decoder_layers=args.decoder_layers)
        epochs = 30 if args.epochs is None and not args.resume else args.epochs
        config = ChemTrainConfig(data=args.data, max_molecules=args.max_molecules, epochs=epochs,
                                 model=architecture, batch_size=args.batch_size, lr=args.lr, beta=args.beta,
                                 kl_warmup_fraction=args.kl_warmup_fraction, n_jobs=args.n_jobs, device=args.device,
                                 progress=not args.no_progress, resume=args.out if args.resume else None)
        # Built (and so checked) before training: '--n-samples 0' was refused only after every epoch.
        eval_config = ChemEvalConfig(run_dir=args.out, n_samples=args.n_samples, n_recon=args.n_recon,
                                     sample_method=args.sample_method, compute_fcd=not args.no_fcd,
                                     n_jobs=args.n_jobs, device=args.device, progress=not args.no_progress)
        trained = train(config, args.out)
        evaluated = evaluate(eval_config)
    except VaelabError as err:  # bad data or settings: one line, as vaelab chem train gives it
        p.error(str(err))
    targets = TARGETS[args.representation]
    rows = []
    for metric in ("recon_accuracy", "validity", "unique@10k", "novelty", "FCD/Test", "intdiv", "SNN/Test"):
        value = evaluated.get(metric)
        op, target = targets.get(metric, ("", None))
        known = value is not None and not math.isnan(value)
        met = (value >= target if op == ">=" else value <= target) if target is not None and known else None
        rows.append({"metric": metric, "value": value, "target": f"{op} {target}" if target is not None else "",
                     "met": met})
    table = pd.DataFrame(rows)
    run_info = pd.DataFrame([{
        "representation": args.representation,
        "encoder": args.encoder,
        "n_train": trained["n_train"],
        "epochs": trained["epochs"],
        "device": trained["device"],
        "train_molecules_per_s": trained["train_molecules_per_s"],
        "epoch_seconds": trained["epoch_seconds"],
        "epoch_seconds_per_100k": 1e5 / trained["train_molecules_per_s"] if trained["train_molecules_per_s"] else None,
        "decoded_molecules_per_s": evaluated["decoded_molecules_per_s"],
        "n_samples": evaluated["n_samples"],
        "wall_seconds": time.perf_counter() - began,
    }])
    pd.set_option("display.width", 200)
    print(table.to_string(index=False))
    print(run_info.to_string(index=False))
    out = Path(args.out)
    table.assign(**run_info.iloc[0].to_dict()).to_csv(out / "bench.csv", index=False)
    print(f"wrote {out / 'bench.csv'}")


if __name__ == "__main__":
    main()
