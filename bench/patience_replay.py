"""What early stopping (``train.patience``) would have done to finished few-label runs.

Usage::

    python bench/patience_replay.py runs/m1m2conv/m1m2_600_s0_alpha10 runs/conv/m2_1000_s2 --patience 30

Reads each run directory's ``history.csv`` (as ``vaelab fewlabel`` writes it, also for a run
stopped by hand) and replays :func:`ssvae.fewlabel.train_m2`'s rule: the best epoch is the last
one whose validation error is at most every earlier one's, and the run stops once the best
epoch lies ``patience`` epochs back. Stopping only removes epochs, so the epochs up to the
stop are the run's own. Prints a markdown table and writes it as CSV with ``--csv``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from fewlabel import to_markdown
from ssvae.fewlabel import TrainConfig
from vaecore.errors import InputDataError


def replay(history: pd.DataFrame, patience: int) -> dict[str, float]:
    """Where a run with this history would stop, and what it would select.

    Args:
        history: Rows of ``epoch``, ``valid_error``, ``test_error``, ``seconds`` (M2's time).
        patience: Epochs after the best one before stopping.

    Returns:
        ``stop_epoch`` (the last epoch trained), ``best_epoch``, ``test_error`` and
        ``minutes`` (M2's time to the stop).
    """
    config = TrainConfig(patience=patience)  # the training loop's own stopping rule
    best_valid, best_epoch, best_test = math.inf, 0, math.nan
    for row in history.itertuples():
        if config.out_of_patience(row.epoch - 1, best_epoch):  # this epoch would not have run
            break
        stop = row
        if row.valid_error <= best_valid:  # ties count as best, as in training
            best_valid, best_epoch, best_test = row.valid_error, row.epoch, row.test_error
    return {"stop_epoch": int(stop.epoch), "best_epoch": int(best_epoch), "test_error": float(best_test),
            "minutes": float(stop.seconds) / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="vaelab fewlabel run directories")
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args()
    try:  # the training config's own check names the bad value
        TrainConfig(patience=args.patience)
    except InputDataError as err:
        p.error(str(err))
    rows = []
    for run in args.runs:
        if not (run / "history.csv").exists():
            p.error(f"{run} has no history.csv (is it an M2 / M1+M2 run directory?)")
        history = pd.read_csv(run / "history.csv")
        as_run, stopped = replay(history, len(history)), replay(history, args.patience)
        rows.append({"run": run.name, "epochs run": len(history),
                     "test error as run": f"{100 * as_run['test_error']:.2f}% (epoch {as_run['best_epoch']})",
                     f"stop after epoch (patience {args.patience})": stopped["stop_epoch"],
                     "test error selected": f"{100 * stopped['test_error']:.2f}% (epoch {stopped['best_epoch']})",
                     "M2 minutes as run": round(float(history["seconds"].iloc[-1]) / 60, 1),
                     "M2 minutes to the stop": round(stopped["minutes"], 1)})
    table = pd.DataFrame(rows)
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
    print(to_markdown(table))


if __name__ == "__main__":
    main()
