#!/usr/bin/env bash
# Serving on the GPU (a step of scripts/gpu-check.sh): harmamba-server
# --device cuda on the shipped models, then `harmamba loadgen` against it on
# loopback: ClassifyBatch saturation and Classify latency. Short runs (a few
# seconds each) to fit the device budget.
#
#   scripts/gpu-serve-check.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$1
out=$2
port=$((20000 + RANDOM % 20000))
target=127.0.0.1:$port
"$build/server/harmamba-server" --device cuda --address="$target" \
  --metrics_address=127.0.0.1:0 --max_batch_size 1024 \
  --max_queue_delay_ms 0.2 >"$out/gpu-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q "listening on" "$out/gpu-server.log" && break
  kill -0 $server 2>/dev/null || { cat "$out/gpu-server.log"; exit 1; }
  sleep 0.1
done
cat "$out/gpu-server.log"
loadgen() { "$build/tools/harmamba" loadgen --target "$target" --server-pid "$server" "$@"; }
loadgen --mode batch --batch-size 1024 --concurrency 2,4 --warmup-s 1 --duration-s 5 \
  --json-out "$out/gpu-serve-batch.json"
loadgen --mode batch --batch-size 64 --concurrency 4,16 --warmup-s 1 --duration-s 4
loadgen --mode unary --concurrency 1,16,64 --warmup-s 1 --duration-s 4 \
  --json-out "$out/gpu-serve-unary.json"
