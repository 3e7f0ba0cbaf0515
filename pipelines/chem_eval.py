"""``vaelab chem eval``: reconstruction and prior-sample metrics of a trained molecule VAE.

Test molecules are reconstructed (greedy decoding from the posterior mean), prior samples
are decoded and scored with the MOSES metrics, and each valid sample's RDKit properties are
compared with the test molecules' (Wasserstein-1 distances, ``properties.png``). The
command line lives with ``chem train`` in :mod:`pipelines.chem`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from chemvae.persistence import load
from chemvae.train import reconstruct
from pipelines.chem import cached_properties, check_run_data, load_run_splits, stored_config
from pipelines.chem_config import ChemEvalConfig
from vaecore.config import config_to_dict
from vaecore.datasets import cache_dir
from vaecore.errors import InputDataError
from vaecore.resume import holds_results
from vaecore.rundir import make_run_dir, write_csv, write_json
from vaecore.runtime import library_versions, resolve_device, seed_everything

N_PROPERTY_REFERENCE = 10_000  # test molecules whose properties properties.png and the W1 distances use


def _canonical_reference(data: str, reference: list[str], n_jobs: int, *, progress: bool) -> list[str]:
    """Canonical SMILES of the novelty reference.

    MOSES's training file is already canonical and MOSES's own novelty compares against
    it as stored, so it is used as is (re-canonicalizing 1.6M strings with today's RDKit
    takes half an hour on a CPU and changes about 0.05% of them). Other data are
    canonicalized here.
    """
    from chemvae.rdkit_utils import canonicalize_all

    if data == "moses":
        return reference
    return sorted({s for s in canonicalize_all(reference, n_jobs=n_jobs, progress=progress) if s})


def _property_distances(samples: pd.DataFrame, test: list[str], path: Path, *, seed: int,
                        n_jobs: int, progress: bool) -> dict[str, float]:
    """Draw ``properties.png`` and return the W1 distances of the valid samples' properties to test's.

    The test side is a seeded subset of at most :data:`N_PROPERTY_REFERENCE` molecules
    (MOSES's test set has 176k), its properties cached like the training set's.
    """
    from scipy.stats import wasserstein_distance

    from pipelines.chem_plots import save_property_histograms

    if not test:
        return {}
    if len(test) > N_PROPERTY_REFERENCE:
        chosen = np.random.default_rng(seed).choice(len(test), N_PROPERTY_REFERENCE, replace=False)
        test = [test[i] for i in np.sort(chosen)]
    reference = cached_properties(test, n_jobs, progress=progress)
    reference = reference[reference["valid"]]
    save_property_histograms(samples, reference, path)
    valid = samples[samples["valid"]]
    return {f"W1 {name}/Test": float(wasserstein_distance(valid[column], reference[column])) if len(valid) else math.nan
            for column, name in (("logp", "logP"), ("qed", "QED"), ("sa", "SA"))}


def _write_eval(out: Path, result: dict[str, Any], config: ChemEvalConfig) -> None:
    """``eval.json``: the metrics in strict JSON (what could not be computed, NaN, is null), with
    the evaluation's settings (seed included) and library versions.

    Those two are kept here, not in ``config.json`` / ``run.json``: an evaluation writes beside
    the trained model by default, whose own files those are.
    """
    record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}
    write_json(out / "eval.json", {**record, "config": config_to_dict(config), "versions": library_versions()})


def evaluate(config: ChemEvalConfig, workdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Reconstruction and prior-sample metrics of a trained run; writes ``eval.json``."""
    from chemvae.metrics import generation_metrics, reconstruction_accuracy
    from chemvae.properties import compute_properties
    from chemvae.refcache import cached_reference_stats
    from pipelines.chem_plots import save_molecule_grid

    began = time.perf_counter()
    out = Path(workdir or config.run_dir)
    if out.resolve() != Path(config.run_dir).resolve() and holds_results(out) and (out / "config.json").is_file():
        # Checked before minutes of decoding; its files went in among the other run's.
        raise InputDataError(f"--out {out} holds another run; chem eval writes beside its model ({config.run_dir}) "
                             "or into a directory of its own")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = load(config.run_dir, device=device)
    make_run_dir(out)  # a file there failed after the decoding
    train_config = stored_config(config.run_dir)
    check_run_data(train_config, config.run_dir, reads="the test molecules (and the novelty reference)",
                   advice="put the run's data back where it was trained from it")
    splits = load_run_splits(train_config)

    rng = np.random.default_rng(config.seed)
    test = splits.test
    if config.n_recon is not None and config.n_recon < len(test):
        test = [test[i] for i in rng.choice(len(test), config.n_recon, replace=False)]
    # Minutes on a CPU with MOSES and FCD, and nothing printed until the end: say which stage runs.
    stages = tqdm(total=5, desc="chem eval", unit="stage", disable=not config.progress)
    stages.set_postfix_str(f"reconstructing {len(test)} test molecules")
    inputs, decoded = reconstruct(model, test, batch_size=config.batch_size)
    recon = reconstruction_accuracy(inputs, decoded) if inputs else math.nan

    stages.update()
    stages.set_postfix_str(f"decoding {config.n_samples} prior samples")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    start = time.perf_counter()
    samples = model.sample(config.n_samples, method=config.sample_method, temperature=config.temperature,
                           generator=generator, batch_size=config.batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    decode_seconds = time.perf_counter() - start
    stages.update()
    stages.set_postfix_str("reference statistics (cached after the first run)")
    reference = _canonical_reference(train_config.data, splits.reference, config.n_jobs, progress=config.progress)
    # The test sets' statistics (176k molecules each for MOSES) are computed once per machine.
    # An empty test split (a small CSV) has no statistics: its metrics are NaN, not an error.
    test_stats = [None if not ref else
                  cached_reference_stats(ref, cache_dir=cache_dir() / "chemvae-reference", device=str(device),
                                         compute_fcd=config.compute_fcd, n_jobs=config.n_jobs)
                  for ref in (splits.test, splits.test_scaffolds)]
    stages.update()
    stages.set_postfix_str("generation metrics" + (" and FCD" if config.compute_fcd else ""))
    generation = generation_metrics(samples, train=reference, train_is_canonical=True, test=test_stats[0],
                                    test_scaffolds=test_stats[1], compute_fcd=config.compute_fcd,
                                    device=str(device), n_jobs=config.n_jobs)
    result = {
        "recon_accuracy": recon,
        "n_recon": len(inputs),
        "n_recon_skipped": len(test) - len(inputs),
        **generation,
        "n_samples": config.n_samples,
        "sample_method": config.sample_method,
        "temperature": config.temperature,
        "decoded_molecules_per_s": config.n_samples / max(decode_seconds, 1e-9),
        "wall_seconds": time.perf_counter() - began,
        "device": str(device),
    }
    _write_eval(out, result, config)  # before the properties and plots: one that fails leaves the metrics written
    stages.update()
    stages.set_postfix_str("the samples' properties and plots")
    properties = compute_properties(samples, n_jobs=config.n_jobs, progress=config.progress)
    write_csv(out / "samples.csv", properties)
    # Only the drawn samples are parsed again, not all n_samples. Each is labelled with its row
    # in samples.csv (positions among the valid ones drifted from it at the first invalid sample).
    shown = np.flatnonzero(properties["valid"].to_numpy())[:config.grid_size]
    result["n_drawn"] = save_molecule_grid(properties["smiles"].iloc[shown].tolist(), out / "prior_samples.png",
                                           legends=[str(i) for i in shown])
    result.update(_property_distances(properties, splits.test, out / "properties.png", seed=config.seed,
                                      n_jobs=config.n_jobs, progress=config.progress))
    stages.update()
    stages.close()
    result["wall_seconds"] = time.perf_counter() - began
    _write_eval(out, result, config)
    return result
