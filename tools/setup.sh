#!/usr/bin/env bash
# Installs what Conflux needs on Debian 12 (as root or with sudo), then configures and builds it.
# Used by tools/test.sh, tools/run.sh and CI; safe to run again (skips what is already there).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  cmake g++ ninja-build pkg-config ccache
  nlohmann-json3-dev libstb-dev libgtest-dev libwebrtc-audio-processing-dev espeak-ng sox
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools
  portaudio19-dev libsoxr-dev alsa-utils
  libboost-dev
  libimgui-dev libglfw3-dev xvfb xauth mesa-utils libgl1-mesa-dri fonts-dejavu-core
)
tools/apt_install.sh "${PACKAGES[@]}"

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD_DIR" -j"$(nproc)"
