#!/usr/bin/env bash
# Configures and builds the project into build/ (Release). Extra arguments go
# to cmake's configure step, e.g. scripts/build.sh -DHARMAMBA_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD_DIR" -j "$JOBS"
