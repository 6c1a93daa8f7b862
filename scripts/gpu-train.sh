#!/usr/bin/env bash
# Full training runs on the lent GPU machine, several at once, in one device
# call: builds `harmamba` against the machine's CUDA LibTorch (as
# scripts/gpu-check.sh does), then starts one `harmamba train --device cuda`
# per line of the runs file, all in parallel (at batch 64 one run leaves the
# GPU mostly idle), and packs the models and logs into $OUT/runs.tar.gz (a
# device call returns at most 8 files). Runs still going when the budget is
# spent are stopped (their logs say how far they got). The test split is not carried:
# evaluate the returned models here with `harmamba eval`.
#
# Here, before the call (all git-ignored):
#   scripts/gpu-fetch-debs.sh                      # .gpu/debs, ~18 MB
#   mkdir -p .gpu/train-data/uci-har && cp ../shared/datasets/uci-har/{X_train.f32,y_train.u8,subject_train.u8,activity_labels.txt} .gpu/train-data/uci-har/
#   a runs file, .gpu/train-runs.txt: one run per line, "NAME ARGS...", ARGS
#   being `harmamba train` flags other than --data/--out/--device/
#   --test-split, e.g.
#     strong-seed5 --name uci-har --epochs 100 --val-subjects 3,16,19,25 --seed 5 --rotate 20 --scale 0.2 --jitter 0.1 --shift 32
# Device call:
#   run(command="bash scripts/gpu-train.sh", carry=[".gpu/debs",
#       ".gpu/train-data", ".gpu/train-runs.txt"], timeout_s=590)
# Afterwards, here:
#   tar xzf <files_at>/runs.tar.gz -C runs/gpu
#   build/tools/harmamba eval --model runs/gpu/NAME.safetensors --data ../shared/datasets/uci-har
#
# Environment: GPU_TRAIN_RUNS (the runs file), GPU_TRAIN_DATA (the dataset
# folder), GPU_TRAIN_BUDGET_S (default 540: runs still going then are
# stopped; their checkpoints are packed too), HARMAMBA (an existing binary:
# skips the build; with DEVICE=cpu this script can be tried on any machine).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-train-out}
RUNS_FILE=${GPU_TRAIN_RUNS:-$ROOT/.gpu/train-runs.txt}
DATA=${GPU_TRAIN_DATA:-$ROOT/.gpu/train-data/uci-har}
BUDGET=${GPU_TRAIN_BUDGET_S:-540}
DEVICE=${DEVICE:-cuda}
START=$(date +%s)
mkdir -p "$OUT/runs"

[ -f "$RUNS_FILE" ] || { echo "no runs file $RUNS_FILE" >&2; exit 2; }
[ -f "$DATA/X_train.f32" ] || { echo "no training split in $DATA" >&2; exit 2; }

if [ -z "${HARMAMBA:-}" ]; then
  export PATH=/usr/local/cuda/bin:$PATH
  DEVROOT=${DEVROOT:-/opt/devroot}
  mkdir -p "$DEVROOT"
  for f in .gpu/debs/*.deb; do dpkg -x "$f" "$DEVROOT" || exit 1; done
  TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LIBRARY_PATH=$DEVROOT/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$DEVROOT/usr/lib/x86_64-linux-gnu:$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  BUILD=${BUILD_DIR:-$ROOT/build-gpu}
  echo "== configure and build harmamba ($(($(date +%s) - START)) s)"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$DEVROOT/usr;$TP" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DHARMAMBA_CUDA=ON -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$OUT/runs/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$(nproc)" --target harmamba >>"$OUT/runs/build.log" 2>&1 ||
    { tail -30 "$OUT/runs/build.log"; exit 1; }
  HARMAMBA=$BUILD/tools/harmamba
fi

echo "== starting runs ($(($(date +%s) - START)) s)"
PIDS=()
NAMES=()
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086  # ARGS are flags, split on purpose
  "$HARMAMBA" train --data "$DATA" --test-split none --device "$DEVICE" \
    --out "$OUT/runs/$name.safetensors" --checkpoint-dir "$OUT/runs/$name" \
    $args >"$OUT/runs/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  echo "   $name: pid $!"
done <"$RUNS_FILE"

# Progress every 30 s (the last epoch line of each run) until all end or the
# budget is spent.
while :; do
  running=0
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
  ((running == 0)) && break
  if (($(date +%s) - START >= BUDGET)); then
    echo "== budget spent: stopping $running run(s)"
    kill "${PIDS[@]}" 2>/dev/null
    break
  fi
  sleep 30
  for name in "${NAMES[@]}"; do
    printf '   %-20s %s\n' "$name" "$(grep -E '^epoch' "$OUT/runs/$name.log" | tail -1 | cut -c1-120)"
  done
done
wait

echo "== results ($(($(date +%s) - START)) s)"
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  echo "--- $name"
  grep -E "^(selected|wall time|wrote)" "$OUT/runs/$name.log" || tail -3 "$OUT/runs/$name.log"
done
# Models and logs only (checkpoints hold the optimiser state too: ~3x a
# model each, and a device call returns at most 16 MiB per file).
(cd "$OUT/runs" && tar czf "$OUT/runs.tar.gz" -- *.safetensors *.log 2>/dev/null ||
  tar czf "$OUT/runs.tar.gz" -- *.log) && rm -rf "$OUT/runs"
ls -la "$OUT"
