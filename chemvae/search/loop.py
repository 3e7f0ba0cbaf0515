"""The search loop shared by every method: :func:`optimize`.

A method (``bo``, ``gradient``, ``random``) only proposes latents and learns from what
became of them; this loop does the rest the same way for all of them:

1. score the initial molecules (for methods that use them; free of budget) and, for
   methods that ask (``uses_decodable``), decode their latents, to say which latents
   decode to a valid molecule;
2. until the budget of objective calls on new molecules is spent: ask the method for
   ``batch_size`` latents, decode them (greedy by default), send the strings through the
   :class:`~chemvae.search.oracle.Oracle` (dedup, failures, budget), record one history
   row per string, and hand the evaluations back to the method.

The loop runs under a private seeded torch RNG (``torch.random.fork_rng``), so the same
seed gives the same history on CPU and the caller's RNG state is left untouched.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from chemvae.model import check_decoding
from chemvae.objectives import get_objective, objective_name
from chemvae.rdkit_utils import canonical_smiles, smiles_list
from chemvae.search.bo import BayesOpt
from chemvae.search.bo_settings import BOSettings
from chemvae.search.gradient import GradientAscent, GradientSettings
from chemvae.search.journal import ScoreJournal
from chemvae.search.oracle import FAILURE_STATUSES, Oracle
from chemvae.search.random import RandomSearch
from chemvae.search.result import SearchRecorder, SearchResult, count_failures, history_frame
from chemvae.search.surrogate import HeadSurrogate
from chemvae.search.trust_region import search_bounds
from vaecore.errors import InputDataError, InputDataWarning, SearchWarning, finite_at_least, integer_at_least

METHODS = ("bo", "gradient", "random")
DEFAULT_N_INIT = 500


def _model_device(model: nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def initial_latents(model: nn.Module, init_smiles: Sequence[str] | None, n_init: int,
                    generator: np.random.Generator) -> tuple[Tensor, list[str]]:
    """Latents `[n, d]` and SMILES of the initial molecules.

    With ``init_smiles``, a seeded random subset of ``n_init`` of them, encoded to their
    posterior means (molecules the model cannot encode are skipped). Without, ``n_init``
    prior draws and their greedy decodings.
    """
    if init_smiles is None:
        z = model.prior().sample((n_init,))
        return z, model.decode(z, method="greedy")
    pool = smiles_list(init_smiles, "init_smiles")
    if not pool:
        raise InputDataError("init_smiles is empty: give the molecules to start from, or None for prior samples")
    if len(pool) > n_init:
        pool = [pool[i] for i in np.sort(generator.choice(len(pool), size=n_init, replace=False))]
    z, kept = model.encode(pool, errors="skip")
    if len(kept) < len(pool):  # skipped and counted: a user's --init-data file loses rows here
        checked = model.check(pool)
        why = f"{checked.summary('initial molecules drawn')}; the first: {checked.first_issue.describe()}"
        if len(kept) == 0:
            raise InputDataError(f"none of the initial molecules could be encoded by the model: {why}")
        warnings.warn(f"the model cannot encode every initial molecule: {why}", InputDataWarning, stacklevel=4)
    return z, [pool[i] for i in kept]


def make_method(method: str, model: nn.Module, objective: Any, box: Tensor, batch_size: int, seed: int,
                settings: Any = None) -> Any:
    """The proposer object for ``method`` (see :data:`METHODS`)."""
    if method == "bo":
        prior = model.prior()
        settings = settings or BOSettings()
        head = (HeadSurrogate(model, objective, dtype=torch.float64, user="BO with head_mean (--bo-head-mean)",
                              instead="leave it off") if settings.head_mean else None)
        return BayesOpt(box, batch_size, settings, seed=seed, prior_loc=prior.mean, prior_scale=prior.stddev,
                        head=head)
    if method == "gradient":
        return GradientAscent(model, objective, box, batch_size, settings or GradientSettings())
    if method == "random":
        return RandomSearch(model.prior(), batch_size)
    raise InputDataError(f"unknown search method {method!r}; choose from {METHODS}")


def optimize(
    model: nn.Module,
    objective: Callable[[Sequence[str]], Sequence[Any]] | str,
    *,
    method: str = "bo",
    budget: int = 500,
    batch_size: int = 10,
    n_init: int | None = None,
    seed: int = 0,
    init_smiles: Sequence[str] | None = None,
    acquisition: str | None = None,
    settings: BOSettings | GradientSettings | None = None,
    prior_bound: float = 3.0,
    decode_method: str = "greedy",
    max_stalled_rounds: int = 50,
    progress: bool = False,
    journal: str | os.PathLike | None = None,
) -> SearchResult:
    """Maximize ``objective`` over molecules decoded from ``model``'s latent space.

    Args:
        model: A trained molecule VAE (``latent_dim``, ``encode``, ``decode``, ``prior``;
            ``property_tensor`` / ``property_names`` for ``gradient``), or the path
            :func:`chemvae.load` reads it from (loaded on the CPU).
        objective: Callable from a list of SMILES to a list of floats (higher is better),
            or the name of a built-in (see :func:`chemvae.objectives.get_objective`).
            ``None``, NaN, infinities and exceptions for a molecule are counted failures.
        method: ``bo``, ``gradient`` or ``random``.
        budget: Objective calls on new molecules; duplicates and invalid strings are free.
        batch_size: Latents proposed per iteration.
        n_init: Initial molecules for ``bo`` / ``gradient`` (scored, not counted in the
            budget); default 500. ``random`` uses none.
        seed: Seeds the torch RNG of the search and the method's own generators.
        init_smiles: Pool of training molecules to draw the initial ones from; ``None``:
            decoded prior samples.
        acquisition: ``logei`` or ``ts`` for ``bo`` (overrides ``settings.acquisition``).
        settings: :class:`~chemvae.search.bo.BOSettings` or
            :class:`~chemvae.search.gradient.GradientSettings`.
        prior_bound: Half-width of the search box in prior standard deviations.
        decode_method: ``greedy`` (deterministic z -> molecule) or ``sample``.
        max_stalled_rounds: Stop (with a warning) after this many iterations in a row
            that produced no new molecule.
        progress: Show a tqdm bar with the best score so far.
        journal: A file recording every objective outcome as it comes (see
            :mod:`chemvae.search.journal`). Given the file of an interrupted search, the
            outcomes recorded there are read instead of calling the objective again: with
            the same seed and settings on the CPU the search retraces its steps without
            objective calls and goes on with the same history it would have had.

    Returns:
        A :class:`~chemvae.search.result.SearchResult`.

    Raises:
        InputDataError: Unknown method, no molecule VAE, bad sizes, ``gradient`` with an
            objective the property head cannot predict, or a journal of another objective.
        ObjectiveError: The objective gave no score for any of the first molecules it was
            called on (:data:`~chemvae.search.oracle.GIVE_UP_AFTER`); a warning names the
            first exception of an objective that raised for some molecules only.
    """
    if method not in METHODS:
        raise InputDataError(f"unknown search method {method!r}; choose from {METHODS}")
    if isinstance(model, (str, os.PathLike)):  # as molopt's --model takes it: the path was an AttributeError
        from chemvae.persistence import load

        model = load(model)
    if missing := [name for name in ("latent_dim", "encode", "decode", "prior") if not hasattr(model, name)]:
        raise InputDataError(f"model must be a molecule VAE (chemvae.load(path), or the path), not a "
                             f"{type(model).__name__}, which has no {', '.join(missing)}")
    if isinstance(objective, str):
        objective = get_objective(objective)
    # Checked before the initial molecules are scored: a user's objective may be expensive.
    check_decoding(decode_method, 1.0, name="decode_method")
    n_init = DEFAULT_N_INIT if n_init is None else n_init
    # numpy integers are fine (budgets often come from arrays); floats and bools are not.
    budget, batch_size = integer_at_least("budget", budget, 1), integer_at_least("batch_size", batch_size, 1)
    n_init, seed = integer_at_least("n_init", n_init, 0), integer_at_least("seed", seed, 0)
    # 0 stopped the search before its first objective call, with a result and a warning only
    max_stalled_rounds = integer_at_least("max_stalled_rounds", max_stalled_rounds, 1)
    finite_at_least("prior_bound", prior_bound, 0, strict=True)  # 0 would search a box of one point
    if acquisition is not None:
        if method != "bo":
            raise InputDataError(f"acquisition={acquisition!r} applies to method 'bo' only, not {method!r}")
        settings = dataclasses.replace(settings or BOSettings(), acquisition=acquisition)
    expected = {"bo": BOSettings, "gradient": GradientSettings}.get(method)
    if settings is not None and (expected is None or not isinstance(settings, expected)):
        wanted = "None (it has no settings)" if expected is None else f"a {expected.__name__} or None"
        raise InputDataError(f"settings of method {method!r} must be {wanted}, not {type(settings).__name__}")
    record = (None if journal is None
              else ScoreJournal(journal, objective_name(objective), statuses=("scored",) + FAILURE_STATUSES))

    device = _model_device(model)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return _run(model, objective, method=method, budget=budget, batch_size=batch_size, n_init=n_init,
                    seed=seed, init_smiles=init_smiles, settings=settings, prior_bound=prior_bound,
                    decode_method=decode_method, max_stalled_rounds=max_stalled_rounds, progress=progress,
                    device=device, journal=record)


def _run(model: nn.Module, objective: Any, *, method: str, budget: int, batch_size: int, n_init: int, seed: int,
         init_smiles: Sequence[str] | None, settings: Any, prior_bound: float, decode_method: str,
         max_stalled_rounds: int, progress: bool, device: torch.device,
         journal: ScoreJournal | None) -> SearchResult:
    generator = np.random.default_rng(seed)
    oracle = Oracle(objective, budget, journal)
    recorder = SearchRecorder(method)
    prior = model.prior()
    loc = prior.mean.to(device, torch.float64)
    scale = prior.stddev.to(device, torch.float64)

    # The method object first: a gradient search with an unsupported objective fails fast.
    proposer = make_method(method, model, objective, search_bounds(loc, scale, prior_bound), batch_size, seed,
                           settings)
    if proposer.uses_init and n_init > 0:
        z0, smiles0 = initial_latents(model, init_smiles, n_init, generator)
        z0 = z0.to(device, torch.float64)
        evaluations = oracle.evaluate(smiles0, counted=False)
        recorder.record(0, z0, evaluations, method="init")
        ok = [i for i, ev in enumerate(evaluations) if ev.ok]
        # The box must hold the incumbent: widen it to cover the encoded molecules.
        proposer.box = search_bounds(loc, scale, prior_bound, z0[ok] if ok else None)
        # Which latents decode to a valid molecule (free: no objective calls): a model that
        # reconstructs a third of its inputs may turn the best one into an invalid string.
        # Only for methods that use it: decoding 500 latents is ~0.6 s, 8% of a gradient run.
        decodable = None
        if proposer.uses_decodable and ok:
            decoded = model.decode(z0[ok], method=decode_method)
            decodable = torch.tensor([canonical_smiles(s) is not None for s in decoded], dtype=torch.bool)
        proposer.initialize(z0[ok], torch.tensor([evaluations[i].score for i in ok], dtype=torch.float64),
                            decodable)

    bar = tqdm(total=budget, desc=f"{method} {objective_name(objective)}", unit="call", disable=not progress)
    iteration, stalled = 0, 0
    try:
        while not oracle.exhausted:
            iteration += 1
            t0 = time.perf_counter()
            z, info = proposer.propose()
            t1 = time.perf_counter()
            smiles = model.decode(z, method=decode_method)
            t2 = time.perf_counter()
            evaluations = oracle.evaluate(smiles)
            t3 = time.perf_counter()
            new = recorder.record(iteration, z, evaluations)
            proposer.observe(z, evaluations)
            recorder.log_iteration(iteration=iteration, propose_seconds=t1 - t0, decode_seconds=t2 - t1,
                                   score_seconds=t3 - t2, new=new,
                                   duplicates=sum(ev.status == "duplicate" for ev in evaluations),
                                   invalid=sum(ev.status == "invalid_smiles" for ev in evaluations),
                                   best_score=recorder.best, **info)
            bar.update(new)
            if math.isfinite(recorder.best):
                bar.set_postfix(best=f"{recorder.best:.4g}")
            stalled = 0 if new else stalled + 1
            if stalled >= max_stalled_rounds:
                warnings.warn(f"{method} search stopped after {stalled} iterations without a new molecule "
                              f"({oracle.calls}/{budget} objective calls used)", SearchWarning, stacklevel=3)
                break
    finally:
        bar.close()
    if oracle.first_exception is not None:  # counted failures alone would hide what went wrong
        warnings.warn(f"the objective raised for {oracle.failures['exception']} molecule(s); the first time "
                      f"{oracle.exception_note()}", SearchWarning, stacklevel=3)

    history = history_frame(recorder.rows)
    latents = torch.cat(recorder.latents) if recorder.latents else torch.zeros(0, loc.shape[-1],
                                                                                dtype=torch.float64)
    method_settings = getattr(proposer, "settings", None)
    used = dataclasses.asdict(method_settings) if method_settings is not None else {}
    used.update(n_init=n_init if proposer.uses_init else 0, batch_size=batch_size, seed=seed,
                prior_bound=prior_bound, decode_method=decode_method)
    return SearchResult(history=history, method=method, objective=objective_name(objective), budget=budget,
                        failures=count_failures(history, FAILURE_STATUSES),
                        wall_seconds=recorder.elapsed(), latents=latents,
                        iterations=pd.DataFrame(recorder.iterations), settings=used,
                        replayed=0 if journal is None else journal.replayed)
