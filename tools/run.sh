#!/usr/bin/env bash
# Main job on a fresh Debian 12 machine: installs dependencies, builds, runs the live assistant.
# With a microphone or camera it listens to them; without either it plays the demo recording in
# assets/demo (two spoken questions and a moving test pattern) as if live, and says so. The trained bundled model
# arrives with its issue; until then the model is assets/model if present, else the tiny reference
# model beside the checkout, else a random-weight Gemma-4-architecture model made here (its answers
# are noise: it shows the pipeline working, not understanding).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
conflux="$BUILD_DIR/app/conflux"

model=${CONFLUX_MODEL:-}
if [ -z "$model" ]; then
  if [ -f assets/model/config.json ]; then model=assets/model
  elif [ -f ../shared/reference/tiny-a/config.json ]; then model=../shared/reference/tiny-a
  else
    model="$BUILD_DIR/demo-model"
    if [ ! -f "$model/config.json" ]; then
      tools/fetch_test_data.sh
      echo "run: no bundled model yet: making a random-weight ~270M-class Gemma 4 model in $model" >&2
      "$conflux" make-random --preset 270m --dtype bf16 --out "$model" \
        --tokenizer "$BUILD_DIR/third_party/gemma3-tokenizer/package/models/tokenizer.json"
    fi
  fi
fi

# Without a microphone or camera, conflux plays the demo recording in assets/demo as if live, and says so.
exec "$conflux" run --model "$model" "$@"
