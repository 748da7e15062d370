#!/usr/bin/env bash
# Every test on a fresh machine: installs what the tests drive (ffmpeg), then runs
# the doc tests, the unit tests, the integration tests against the real binary on
# 127.0.0.1, the allocation test and the worked backend example, with every
# backend compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
cargo test --features full --doc
cargo test --features full --all-targets
