#!/usr/bin/env bash
# Compiles every translation unit that includes LibTorch against the headers
# of LibTorch 2.x (Debian trixie's libtorch-dev, downloaded and unpacked into
# a cache folder, not installed), with the flags CMake recorded in
# compile_commands.json. Compile-only (-fsyntax-only): the 2.x libraries need
# a newer glibc than Debian 12 has, so nothing is linked or run.
#
# usage: scripts/check-libtorch2.sh [BUILD_DIR]   (default: build)
# Exit 0: all compile; 1: a file does not; 77: skipped (no network, no
# compile_commands.json).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=$(realpath "${1:-build}")
commands="$build_dir/compile_commands.json"
cache="$build_dir/libtorch2-headers"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${LIBTORCH2_SUITE:-trixie}

if [[ ! -f $commands ]]; then
  echo "check-libtorch2: skipped: no $commands (configure with CMake first)"
  exit 77
fi

for tool in curl xz dpkg-deb python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-libtorch2: skipped: $tool is not installed (scripts/setup.sh installs it)"
    exit 77
  fi
done

if [[ ! -d $cache/usr/include/torch ]]; then
  mkdir -p "$cache"
  # Find the suite's current libtorch-dev (its version changes over time).
  if ! curl -fsS --max-time 60 "$mirror/dists/$suite/main/binary-amd64/Packages.xz" \
      -o "$cache/Packages.xz"; then
    echo "check-libtorch2: skipped: cannot reach $mirror"
    exit 77
  fi
  deb=$(xz -dc "$cache/Packages.xz" |
        awk '/^Package: libtorch-dev$/ {p = 1} p && !done && /^Filename:/ {print $2; done = 1}')
  if [[ -z $deb ]]; then
    echo "check-libtorch2: skipped: no libtorch-dev in $suite"
    exit 77
  fi
  if ! curl -fsS --max-time 300 "$mirror/$deb" -o "$cache/libtorch-dev.deb"; then
    echo "check-libtorch2: skipped: cannot download $mirror/$deb"
    exit 77
  fi
  dpkg-deb -x "$cache/libtorch-dev.deb" "$cache"
  rm -f "$cache/Packages.xz" "$cache/libtorch-dev.deb"
fi
include="$cache/usr/include"
version=$(awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH)/ {v = v (v ? "." : "") $3} END {print v}' \
  "$include/torch/csrc/api/include/torch/version.h")
echo "check-libtorch2: LibTorch $version headers from $suite in $cache"
# The rewritten include order must really pick the 2.x headers.
probe="$cache/probe.cc"
printf '#include <torch/version.h>\nstatic_assert(TORCH_VERSION_MAJOR >= 2, "LibTorch 1.x headers picked");\n' >"$probe"
if ! c++ -std=c++17 -isystem "$include/torch/csrc/api/include" -isystem "$include" \
    -isystem /usr/include/torch/csrc/api/include -fsyntax-only "$probe"; then
  echo "check-libtorch2: the 2.x headers are not the ones found first"
  exit 1
fi

# The LibTorch translation units, their commands rewritten to use the 2.x
# headers first (before /usr/include, which holds Debian 12's 1.13).
mapfile -t lines < <(python3 - "$commands" "$include" <<'PY'
import json, re, sys
commands, include = sys.argv[1], sys.argv[2]
old = "-isystem /usr/include/torch/csrc/api/include"
new = f"-isystem {include}/torch/csrc/api/include -isystem {include}"
for entry in json.load(open(commands)):
    command = entry["command"]
    if old not in command:
        continue
    command = re.sub(r" -o \S+", " -fsyntax-only", command.replace(old, new))
    print(entry["directory"] + "\t" + entry["file"] + "\t" + command)
PY
)
if [[ ${#lines[@]} -eq 0 ]]; then
  echo "check-libtorch2: no LibTorch translation units found in $commands"
  exit 1
fi
failed=0
for line in "${lines[@]}"; do
  IFS=$'\t' read -r dir file command <<<"$line"
  if (cd "$dir" && eval "$command"); then
    echo "check-libtorch2: ok      $file"
  else
    echo "check-libtorch2: FAILED  $file"
    failed=1
  fi
done
exit $failed
