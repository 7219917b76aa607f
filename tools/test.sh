#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs dependencies, fetches test data, builds,
# runs every test with ctest. Reference outputs are read in place from ../shared/reference.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/fetch_test_data.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" "$@"
