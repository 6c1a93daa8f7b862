#!/usr/bin/env bash
# Here, before a device call: downloads the Debian packages the GPU machine
# lacks into .gpu/debs (git-ignored; carried by the call, ~18 MB). See
# docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/gpu/fetch-devroot-debs.sh .gpu/debs 2>/dev/null ||
  bash /work/shared/gpu/fetch-devroot-debs.sh .gpu/debs
# Header-only, needed by our CMake configure; not in the shared list.
(cd .gpu/debs && apt-get download nlohmann-json3-dev)
ls .gpu/debs | wc -l
