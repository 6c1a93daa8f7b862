#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine: installs what is
# missing, builds, starts harmamba-server on the shipped models (models/),
# and drives it with the client:
#   1. lists the served models,
#   2. streams a 38 s recorded session (models/samples/) through
#      StreamClassify and prints one activity per window as it arrives,
#   3. classifies the UCI HAR test split through ClassifyBatch and scores it
#      (when ../shared/datasets/uci-har is present),
#   4. shows a few of the server's Prometheus metrics,
# then stops the server with SIGTERM (graceful shutdown).
# Environment: PORT (default 50051), METRICS_PORT (default 9464),
# SKIP_BUILD=1 to reuse an existing build/.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-50051}
METRICS_PORT=${METRICS_PORT:-9464}
BUILD_DIR=${BUILD_DIR:-build}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  scripts/setup.sh
  scripts/build.sh
fi
harmamba="$BUILD_DIR/tools/harmamba"
server="$BUILD_DIR/server/harmamba-server"
target="127.0.0.1:$PORT"

echo "== starting harmamba-server on $target (metrics on :$METRICS_PORT)"
"$server" --address="$target" --metrics_address="127.0.0.1:$METRICS_PORT" \
  --model_dir=models &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$harmamba" health --target "$target" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server_pid 2>/dev/null; then
    echo "harmamba-server exited early" >&2
    exit 1
  fi
  sleep 0.1
done
"$harmamba" health --target "$target"

echo
echo "== models served"
for model in models/*.safetensors; do
  "$harmamba" info --model "$model" | head -4
done

echo
echo "== streaming models/samples/uci-har-subject2-session.csv (6 activities, 38 s) through StreamClassify"
echo "   window  start  end  label  probability"
"$harmamba" client --target "$target" --model uci-har --rpc stream --pace fast \
  --input models/samples/uci-har-subject2-session.csv --chunk 25

data=../shared/datasets/uci-har
if [ -f "$data/X_test.f32" ]; then
  echo
  echo "== UCI HAR test split (2,947 windows, 9 subjects never seen in training) through ClassifyBatch"
  "$harmamba" client --target "$target" --model uci-har --rpc batch \
    --input "$data/X_test.f32" --json > "$BUILD_DIR/demo-predictions.json"
  python3 - "$BUILD_DIR/demo-predictions.json" "$data/y_test.u8" <<'PY'
import json, sys
predictions = json.load(open(sys.argv[1]))["predictions"]
truth = open(sys.argv[2], "rb").read()
correct = sum(p["class_index"] == truth[p["index"]] for p in predictions)
print(f"accuracy through the server: {correct}/{len(truth)} = {correct / len(truth):.4f}")
PY
else
  echo "(no ../shared/datasets/uci-har here: skipping the test-split run)"
fi

echo
echo "== a few of the server's metrics (http://127.0.0.1:$METRICS_PORT/metrics)"
python3 - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if (line.startswith(("harmamba_requests_total", "harmamba_predictions_total",
                         "harmamba_batch_size_windows_count",
                         "harmamba_stream_windows_sent_total"))
            and 'model="uci-har"' in line and not line.endswith(" 0")):
        print("  " + line)
PY

echo
echo "== stopping the server (SIGTERM: drain, then exit)"
kill -TERM $server_pid
wait $server_pid
trap - EXIT
echo "done"
