#!/usr/bin/env bash
# test.sh: the README's second command. Installs what is missing (incl. the test oracles), builds,
# and runs the whole test suite (CUnit suites under CTest) twice: on the Release build, and on an
# AddressSanitizer + UndefinedBehaviorSanitizer build (skip the latter with MRPIPE_NO_SANITIZE=1).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/scripts/install-deps.sh" --test
"$src/scripts/build.sh"
(cd "$src/${MRPIPE_BUILD_DIR:-build}" && ctest --output-on-failure -j"$(nproc)")
if [ "${MRPIPE_NO_SANITIZE:-0}" != 1 ]; then
  echo "== the same suite under ASan + UBSan"
  cmake -S "$src" -B "$src/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMRPIPE_SANITIZE=ON >/dev/null
  cmake --build "$src/build-asan" -j"$(nproc)"
  (cd "$src/build-asan" && ctest --output-on-failure -j"$(nproc)")
fi
