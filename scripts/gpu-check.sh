#!/usr/bin/env bash
# The single device call for the lent GPU machine (docs/gpu.md): configure
# against the machine's PyTorch LibTorch and the carried Debian packages,
# build, run the GPU and unit tests, compute-sanitizer, the kernel
# benchmark and the plain-PyTorch baseline. Every step's log goes to
# $OUT/<step>.log; a summary table is printed at the end (and written to
# $OUT/summary.txt); the logs are then packed into $OUT/logs.tar.gz.
#
# Here, before the call:  ../shared/gpu/fetch-devroot-debs.sh .gpu/debs
#                         apt-get download nlohmann-json3-dev  (into .gpu/debs)
#               mkdir -p .gpu/data/uci-har; copy the test split of
#               ../shared/datasets/uci-har (X_test.f32, y_test.u8,
#               subject_test.u8, activity_labels.txt) into it
# Device call:  run(command="bash scripts/gpu-check.sh", carry=[".gpu/debs", ".gpu/data"],
#                   timeout_s=560)
#
# Steps run in priority order under one overall budget
# (GPU_CHECK_BUDGET_S, default 480 s); a step that no longer fits is
# recorded as SKIPPED. The full build runs in the background meanwhile. Exit status: 0 when every step that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
START=$(date +%s)
mkdir -p "$OUT"
SUMMARY=()
FAILED=0

# step NAME MAX_SECONDS CMD...: runs CMD under timeout, logging to
# $OUT/NAME.log; the limit is cut to what is left of the budget.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if ((left < 15)); then
    SUMMARY+=("$(printf '%-16s %-9s %5s  %s' "$name" SKIPPED - "budget spent")")
    echo "== $name: skipped (budget spent)"
    return 1
  fi
  ((limit > left)) && limit=$left
  local t0
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local took=$(($(date +%s) - t0))
  local verdict=ok
  if ((rc == 124 || rc == 137)); then
    verdict=TIMEOUT
  elif ((rc != 0)); then
    verdict="FAIL($rc)"
  fi
  ((rc != 0)) && FAILED=1
  SUMMARY+=("$(printf '%-16s %-9s %4ss  %s' "$name" "$verdict" "$took" "$name.log")")
  echo "== $name: $verdict in ${took}s"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   | /'
  return $rc
}

# bg_start NAME MAX_SECONDS CMD...: like step, but in the background (the
# full build overlaps the GPU steps, which leave most cores idle);
# bg_wait NAME then records it.
bg_start() {
  local name=$1 limit=$2
  shift 2
  BG_T0=$(date +%s)
  (
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo $? >"$OUT/$name.rc"
  ) &
  BG_PID=$!
  echo "== $name: started in the background"
}

bg_wait() {
  local name=$1
  wait "$BG_PID"
  local rc
  rc=$(cat "$OUT/$name.rc" 2>/dev/null || echo 1)
  local took=$(($(date +%s) - BG_T0))
  local verdict=ok
  if ((rc == 124 || rc == 137)); then
    verdict=TIMEOUT
  elif ((rc != 0)); then
    verdict="FAIL($rc)"
  fi
  ((rc != 0)) && FAILED=1
  SUMMARY+=("$(printf '%-16s %-9s %4ss  %s' "$name" "$verdict" "$took" "$name.log (background)")")
  echo "== $name: $verdict in ${took}s"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   | /'
  return "$rc"
}

skip() {
  SUMMARY+=("$(printf '%-16s %-9s %5s  %s' "$1" SKIPPED - "$2")")
  echo "== $1: skipped ($2)"
}

if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
SANITIZER=$(command -v compute-sanitizer || true)
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] &&
  SANITIZER=/usr/local/cuda/bin/compute-sanitizer

step env 30 bash -c 'nvidia-smi; nvcc --version; cmake --version | head -1;
  g++ --version | head -1; nproc; free -g | head -2;
  python3 -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available())"'

# The packages the machine lacks (gRPC, Abseil, prometheus-cpp, ...).
DEVROOT=${DEVROOT:-/opt/devroot}
if ls .gpu/debs/*.deb >/dev/null 2>&1; then
  step devroot 60 bash -c "mkdir -p $DEVROOT && for f in .gpu/debs/*.deb; do dpkg -x \"\$f\" $DEVROOT || exit 1; done; ls .gpu/debs | wc -l"
else
  skip devroot "no .gpu/debs carried"
fi

TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null)
TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null)
export LIBRARY_PATH=$DEVROOT/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$DEVROOT/usr/lib/x86_64-linux-gnu:$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step configure 120 cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$DEVROOT/usr;$TP" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DHARMAMBA_CUDA=ON -DHARMAMBA_CUDA_PTXAS_VERBOSE=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5
CONFIGURED=$?

if ((CONFIGURED == 0)); then
  # The CUDA targets first, so that a failure elsewhere cannot hide them.
  step build-kernels 200 cmake --build "$BUILD" -j "$JOBS" --target \
    kernels_cuda_test kernels_cuda_host_test kernels_cuda_bench export_reference_case \
    gpu_engine_test gpu_engine_bench kernel_ops_cuda_test
  step test-gpu 150 bash -c "cd '$BUILD' && ctest -L gpu -V"
  step bench-engine 60 "$BUILD/bench/gpu_engine_bench"
  step bench-kernels 60 "$BUILD/bench/kernels_cuda_bench"
  mkdir -p "$OUT/refcase"
  step reference 150 bash -c "'$BUILD/bench/export_reference_case' '$OUT/refcase' 64 &&
    python3 '$ROOT/bench/reference.py' --model '$OUT/refcase/model.safetensors' \
      --check '$OUT/refcase/windows.f32' '$OUT/refcase/logits.f32' --graph"
  # Timings above ran on an otherwise idle machine; the rest overlaps.
  BUILD_ALL_LIMIT=$((BUDGET - ($(date +%s) - START) - 45))
  ((BUILD_ALL_LIMIT < 30)) && BUILD_ALL_LIMIT=30
  bg_start build-all "$BUILD_ALL_LIMIT" cmake --build "$BUILD" -j $((JOBS * 3 / 4)) -- -k 0
  if [ -n "$SANITIZER" ]; then
    step memcheck 100 "$SANITIZER" --tool memcheck --error-exitcode 1 \
      "$BUILD/tests/gpu/kernels_cuda_test" --gtest_brief=1 \
      --gtest_filter='*_pad*:*ScanBackwardTest*:*LayerNormTest*r37*:*EngineInterleaved*:*Fused*'
    step memcheck-engine 60 "$SANITIZER" --tool memcheck --error-exitcode 1 \
      "$BUILD/tests/gpu/gpu_engine_test" --gtest_filter='*Uci*:*OddShapes*'
    step racecheck 75 "$SANITIZER" --tool racecheck --error-exitcode 1 \
      "$BUILD/tests/gpu/kernels_cuda_test" --gtest_brief=1 \
      --gtest_filter='*ScanForwardTest*b3_L33_E130_N5*:*ScanBackwardTest*b3_L20_E200*:*ScanBackwardTest*b1_L19_E259*:*FusedPairTest*T40*:*EmbedAndHead*'
  else
    skip memcheck "compute-sanitizer not found"
    skip racecheck "compute-sanitizer not found"
  fi
  bg_wait build-all
  DATA=$ROOT/.gpu/data/uci-har
  HARMAMBA=$BUILD/tools/harmamba
  if [ -f "$DATA/X_test.f32" ]; then
    # The shipped models on the UCI-HAR test split: CUDA engine vs CPU engine.
    step eval-gpu 60 bash -c "for m in uci-har uci-har-acc; do
        for b in cuda fast; do
          '$HARMAMBA' eval --model '$ROOT/models/'\$m.safetensors --data '$DATA' \
            --backend \$b --batch 1024 --json > '$OUT/eval-'\$m-\$b.json || exit 1
        done
        python3 -c 'import json,sys; g,c=(json.load(open(f)) for f in sys.argv[2:]);
print(sys.argv[1], \"accuracy cuda %.4f%% cpu %.4f%%, macro-F1 cuda %.4f%% cpu %.4f%%, same confusion: %s\" % (
 100*g[\"accuracy\"], 100*c[\"accuracy\"], 100*g[\"macro_f1\"], 100*c[\"macro_f1\"], g[\"confusion\"]==c[\"confusion\"]))' \
          \$m '$OUT/eval-'\$m-cuda.json '$OUT/eval-'\$m-fast.json
      done"
    # Training speed on the device: the fast path (our CUDA kernels with
    # hand-written backward) and, as the baseline in the same run, the
    # reference path (LibTorch's CUDA ops, autograd). The test split stands
    # in as training data (speed only).
    step train-gpu 90 "$HARMAMBA" train --data "$DATA" --split test \
      --test-split none --val-count 0 --epochs 3 --device cuda --path fast \
      --out /tmp/gpu-train.safetensors --force
    step train-gpu-ref 90 "$HARMAMBA" train --data "$DATA" --split test \
      --test-split none --val-count 0 --epochs 3 --device cuda \
      --path reference --out /tmp/gpu-train-ref.safetensors --force
  else
    skip eval-gpu "no .gpu/data/uci-har carried"
  fi
  step serve-gpu 60 bash "$ROOT/scripts/gpu-serve-check.sh" "$BUILD" "$OUT"
  if command -v ncu >/dev/null; then
    step ncu-pair 90 ncu --clock-control none -k regex:FusedPair --launch-skip 6 \
      -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats \
      "$BUILD/bench/gpu_engine_bench" 8192
  else
    skip ncu-pair "ncu not found"
  fi
  step test-unit 150 bash -c "cd '$BUILD' && ctest -L unit -E emulated -j 8 --output-on-failure"
  # trainer_test has segfaulted with LibTorch 2.11 (docs/gpu.md): a backtrace.
  GDB=$(command -v gdb || command -v cuda-gdb || true)
  [ -z "$GDB" ] && [ -x /usr/local/cuda/bin/cuda-gdb ] && GDB=/usr/local/cuda/bin/cuda-gdb
  if [ -n "$GDB" ]; then
    step trainer-segv 60 "$GDB" -batch -ex run -ex bt --args \
      "$BUILD/tests/unit/trainer_test" \
      --gtest_filter='RegularisationTest.*'
  else
    step trainer-segv 60 bash -c "ulimit -c 0; '$BUILD/tests/unit/trainer_test' \
      --gtest_filter='RegularisationTest.*'; echo exit \$?"
  fi
else
  skip build "configure failed"
fi

{
  echo
  echo "gpu-check summary ($(($(date +%s) - START)) s of $BUDGET s; logs in \$OUT)"
  printf '%s\n' "${SUMMARY[@]}"
  grep -h -A40 "Largest norm-wise relative error" "$OUT/test-gpu.log" 2>/dev/null | head -24
  grep -h -E "tests passed|tests failed|\(Skipped\)|\(Failed\)|Not Run" "$OUT/test-gpu.log" "$OUT/test-unit.log" 2>/dev/null
  grep -h "check vs C++" "$OUT/reference.log" 2>/dev/null
  grep -h "gpu engine vs float64" "$OUT/test-gpu.log" 2>/dev/null
  grep -h "same confusion" "$OUT/eval-gpu.log" 2>/dev/null
  grep -h "model fast path on" "$OUT/test-gpu.log" 2>/dev/null
  grep -h -E "^#[0-9]+|SIGSEGV|received signal" "$OUT/trainer-segv.log" 2>/dev/null | head -30
  grep -h -E "^epoch|path" "$OUT/train-gpu.log" "$OUT/train-gpu-ref.log" 2>/dev/null
  echo "--- fused CUDA engine (bench-engine) vs plain PyTorch (reference):"
  cat "$OUT/bench-engine.log" 2>/dev/null
  grep -h -E "^ +[0-9]+ +(eager|graph)" "$OUT/reference.log" 2>/dev/null
} | tee "$OUT/summary.txt"
# Only 8 files come back from a device call: the logs travel as one archive.
tar czf /tmp/gpu-check-logs.tar.gz -C "$OUT" --exclude=./summary.txt . &&
  find "$OUT" -mindepth 1 ! -name summary.txt -delete &&
  mv /tmp/gpu-check-logs.tar.gz "$OUT/logs.tar.gz"
exit $FAILED
