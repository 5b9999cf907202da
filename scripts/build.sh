#!/usr/bin/env bash
# build.sh: configure and build mrpipe in Release into ./build (or $MRPIPE_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${MRPIPE_BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$dir" -j"$(nproc)"
