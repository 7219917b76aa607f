#!/usr/bin/env bash
# Main job on a fresh Debian 12 machine: installs dependencies, builds, runs the assistant.
# Until the live assistant lands (streaming session, capture, window, bundled model), this runs one
# multimodal turn through the engine on the tiny reference model and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
MODEL=${CONFLUX_MODEL:-../shared/reference/tiny-a}
echo "run: the live assistant is not built yet; running one turn through the engine on $MODEL" >&2
exec "${BUILD_DIR:-build}/app/conflux" generate --model "$MODEL" --prompt "What do you see and hear?" "$@"
