#!/usr/bin/env bash
# The main job on a fresh machine: install what the build needs, build with every
# backend, and serve the camera (or the built-in test pattern when there is none).
# Extra arguments go to `livestream serve`, e.g. scripts/run.sh --codec raw
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release --features full -- serve "$@"
