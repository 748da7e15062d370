#!/usr/bin/env bash
# Every test on a fresh machine: installs what the tests drive (ffmpeg, Chromium,
# promtool, Xvfb, xdotool), then runs the doc tests, the unit tests, the integration tests
# against the real binary on 127.0.0.1, the allocation test and the worked
# backend example, with every backend compiled in; then every fuzz target
# replays its committed corpus and fuzzes for 20 s (scripts/fuzz.sh).
#
# One test at a time: several tests check that viewers get every frame at the
# stream's rate, which a 2-core machine cannot promise while Chromium or ffmpeg
# of another test takes both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
cargo test --profile ci --features full --doc
cargo test --profile ci --features full --all-targets -- --test-threads=1
# The default build's own engines (pure-Rust JPEG) have unit tests too.
cargo test --profile ci --lib -- --test-threads=1
# Every parser of untrusted bytes: its corpus replayed, then fuzzed.
scripts/fuzz.sh
