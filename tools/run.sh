#!/usr/bin/env bash
# Main job on a fresh Debian 12 machine: installs dependencies, builds, runs the live assistant on the
# bundled model (assets/model; CONFLUX_MODEL=DIR picks another). With a microphone or camera it listens
# to them; without either it plays the demo recording in assets/demo (spoken questions about shown scenes)
# as if live, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
exec "$BUILD_DIR/app/conflux" run --model "${CONFLUX_MODEL:-assets/model}" "$@"
