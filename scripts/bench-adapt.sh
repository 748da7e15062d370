#!/usr/bin/env bash
# Adaptive quality side by side, over the same tbf-capped links between two
# network namespaces (8, 3 and 1 Mbit/s): livestream adaptive, livestream at
# one rendition (adapt = "off"), and ffmpeg's libx264 at a fixed 2.5 Mbit/s
# over TCP, each on the same stamped, camera-like 720p30 pictures. Prints one
# Markdown table (tests/integration/adapt_bench.rs has the details).
#
#   scripts/bench-adapt.sh
#
# Needs root (network namespaces), iproute2 and ffmpeg with libx264; builds
# the release profile. About 4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
cargo test --release --features full --test integration -- \
  --ignored --exact adapt_bench::bench_adaptive_fixed_and_x264_over_capped_links \
  --nocapture --test-threads=1 2>/dev/null | grep '^|'
