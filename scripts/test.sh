#!/usr/bin/env bash
# test.sh: the README's second command. Installs what is missing (incl. the test oracles), builds,
# and runs the whole test suite (CUnit suites under CTest).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/scripts/install-deps.sh" --test
"$src/scripts/build.sh"
cd "$src/${MRPIPE_BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)"
