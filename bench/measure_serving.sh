#!/usr/bin/env bash
# Serving measurements of docs/performance.md ("Serving"), on one machine:
# the model-only benchmark and ClassifyBatch saturation, interleaved ROUNDS
# times (the machine is shared: interleaving exposes both to the same
# background load); Classify latency at half the measured saturation
# throughput; then each loadgen mode at a few load levels.
#
#   bench/measure_serving.sh MODEL_DIR OUT_DIR [BUILD_DIR]
#
# Writes OUT_DIR/log.txt (every command and its output, with the load
# average before each) and one JSON/CSV report per loadgen run.
set -euo pipefail
model_dir=$(realpath "$1")
out=$(realpath -m "$2")
build=$(realpath "${3:-build}")
rounds=${ROUNDS:-3}
port=${PORT:-50093}
mkdir -p "$out"
log="$out/log.txt"
: > "$log"
harmamba="$build/tools/harmamba"
target="127.0.0.1:$port"

say() { echo "$@" | tee -a "$log"; }
run() {  # run a command, logging it, the load average and its output
  say "\$ $*"
  say "# $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@" 2>&1 | tee -a "$log"
}

say "# $(uname -n) $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
"$build/server/harmamba-server" --model_dir="$model_dir" --address="$target" \
  --metrics_address=127.0.0.1:0 --threads=2 > "$out/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$out/server.log" && break
  sleep 0.1
done
cat "$out/server.log" | tee -a "$log"

# 1. Model-only vs end-to-end ClassifyBatch, batch 64, 2 threads.
for r in $(seq "$rounds"); do
  run "$build/bench/model_bench" --benchmark_filter='BM_CpuEngine/batch:64/threads:2/' \
    --benchmark_min_time=10 --benchmark_counters_tabular=true
  run "$harmamba" loadgen --target "$target" --mode batch --batch-size 64 \
    --concurrency 2 --warmup-s 3 --duration-s 20 --server-pid "$server_pid" \
    --json-out "$out/saturation_$r.json"
done
saturation=$(python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rates = [json.load(open(f"{out}/saturation_{r}.json"))["levels"][0]["windows_per_s"]
         for r in range(1, rounds + 1)]
print(round(statistics.median(rates)))
PY
)
half=$((saturation / 2))
say "# median ClassifyBatch saturation: $saturation windows/s; half: $half"

# 2. Classify latency at half that load (open loop, Poisson arrivals).
run "$harmamba" loadgen --target "$target" --mode unary --rate "$half" \
  --warmup-s 3 --duration-s 30 --server-pid "$server_pid" \
  --json-out "$out/classify_half.json"

# 3. Each mode at a few load levels.
run "$harmamba" loadgen --target "$target" --mode unary --concurrency 1,2,4,8 \
  --warmup-s 2 --duration-s 10 --server-pid "$server_pid" \
  --json-out "$out/unary.json" --csv-out "$out/unary.csv"
run "$harmamba" loadgen --target "$target" --mode batch --batch-size 64 \
  --concurrency 1,2,4 --warmup-s 2 --duration-s 10 --server-pid "$server_pid" \
  --json-out "$out/batch.json" --csv-out "$out/batch.csv"
run "$harmamba" loadgen --target "$target" --mode stream --concurrency 16,64,256 \
  --sample-rate-hz 50 --chunk 10 --warmup-s 5 --duration-s 15 \
  --server-pid "$server_pid" --json-out "$out/stream.json" --csv-out "$out/stream.csv"
run "$harmamba" loadgen --target "$target" --mode stream --pace fast --chunk 64 \
  --concurrency 1,4 --warmup-s 2 --duration-s 10 --server-pid "$server_pid" \
  --json-out "$out/stream_fast.json" --csv-out "$out/stream_fast.csv"
say "# done $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)"
