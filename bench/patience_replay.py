"""What early stopping (``train.patience``) or a shorter budget would have done to finished few-label runs.

Usage::

    python bench/patience_replay.py runs/m1m2conv/m1m2_600_s0_alpha10 runs/conv/m2_1000_s2 --patience 30
    python bench/patience_replay.py runs/m1long/m1m2_100_s0_m1e150 --patience none --budget-minutes 60

Reads each run directory's ``history.csv`` (as ``vaelab fewlabel`` writes it, also for a run
stopped by hand) and replays :func:`ssvae.fewlabel.train_m2`'s rules: the best epoch is the last
one whose validation error is at most every earlier one's; the run stops once the best epoch
lies ``patience`` epochs back, once its time (M1's training included, from the ``history.csv``
of the M1 it trained or loaded) reaches ``--budget-minutes`` before an epoch, or after
``--max-epochs``. Stopping only removes epochs, so the epochs up to the stop are the run's own.
Prints a markdown table and writes it as CSV with ``--csv``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from fewlabel import to_markdown
from ssvae.api import m1_training_seconds
from ssvae.train_config import TrainConfig
from vaecore.errors import InputDataError


def replay(history: pd.DataFrame, config: TrainConfig, seconds_before: float = 0.0) -> dict[str, float]:
    """Where a run with this history would stop under ``config``'s rules, and what it would select.

    Args:
        history: Rows of ``epoch``, ``valid_error``, ``test_error``, ``seconds`` (M2's time
            so far).
        config: Its ``patience``, ``time_budget_minutes`` and ``epochs`` are replayed.
        seconds_before: Time the run spent before M2 (M1's training), counted in the budget.

    Returns:
        ``stop_epoch`` (the last epoch trained), ``best_epoch``, ``test_error`` and
        ``minutes`` (M2's time to the stop); with no epoch run, 0, 0, NaN and 0.
    """
    best_valid, best_epoch, best_test, elapsed, stop_epoch = math.inf, 0, math.nan, 0.0, 0
    for row in history.itertuples():
        done = row.epoch - 1  # the training loop's own checks, before this epoch
        # The budget only once an epoch is kept, as train_m2 checks it: an M1 that used up the
        # budget still gets one M2 epoch (the replay stopped at epoch 0, with no error to show).
        out_of_time = best_epoch > 0 and config.out_of_time(seconds_before + elapsed)
        if done >= config.epochs or config.out_of_patience(done, best_epoch) or out_of_time:
            break
        stop_epoch, elapsed = row.epoch, float(row.seconds)
        if row.valid_error <= best_valid:  # ties count as best, as in training
            best_valid, best_epoch, best_test = row.valid_error, row.epoch, row.test_error
    return {"stop_epoch": int(stop_epoch), "best_epoch": int(best_epoch), "test_error": float(best_test),
            "minutes": elapsed / 60}


def m1_seconds(run: Path) -> float:
    """The M1 time that ``run``'s budget counted: its own M1's, or that of the M1 it loaded."""
    source = run / "m1"
    if (run / "fit_config.json").exists():
        checkpoint = json.loads((run / "fit_config.json").read_text(encoding="utf-8"))["m1"].get("checkpoint")
        if checkpoint is not None:  # as the run resolved it: relative to where it was started
            source = Path(checkpoint)
            if not source.exists():
                raise InputDataError(f"{run} loaded its M1 from {checkpoint}, which is not there from here")
    return m1_training_seconds(source)


def patience(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="vaelab fewlabel run directories")
    p.add_argument("--patience", type=patience, default=30, help="epochs, or none")
    p.add_argument("--budget-minutes", type=float, default=None, help="M1 and M2 together; default: none")
    p.add_argument("--max-epochs", type=int, default=None, help="M2 epochs; default: all")
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args()
    try:  # the training config's own checks name a bad value
        config = TrainConfig(patience=args.patience, time_budget_minutes=args.budget_minutes,
                             epochs=args.max_epochs if args.max_epochs is not None else 10**9)
    except InputDataError as err:
        p.error(str(err))
    rule = [f"patience {args.patience}" if args.patience is not None else "no patience"]
    if args.budget_minutes is not None:
        rule.append(f"budget {args.budget_minutes:g} min")
    if args.max_epochs is not None:
        rule.append(f"at most {args.max_epochs} epochs")
    rows = []
    for run in args.runs:
        if not (run / "history.csv").exists():
            p.error(f"{run} has no history.csv (is it an M2 / M1+M2 run directory?)")
        history = pd.read_csv(run / "history.csv")
        as_run = replay(history, TrainConfig(epochs=len(history)))
        try:
            stopped = replay(history, config, m1_seconds(run) if args.budget_minutes is not None else 0.0)
        except InputDataError as err:
            p.error(str(err))
        rows.append({"run": run.name, "epochs run": len(history),
                     "test error as run": f"{100 * as_run['test_error']:.2f}% (epoch {as_run['best_epoch']})",
                     f"stop after epoch ({', '.join(rule)})": stopped["stop_epoch"],
                     "test error selected": f"{100 * stopped['test_error']:.2f}% (epoch {stopped['best_epoch']})",
                     "M2 minutes as run": round(float(history["seconds"].iloc[-1]) / 60, 1),
                     "M2 minutes to the stop": round(stopped["minutes"], 1)})
    table = pd.DataFrame(rows)
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
    print(to_markdown(table))


if __name__ == "__main__":
    main()
