#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes (cargo-fuzz,
# libFuzzer; the targets are in fuzz/fuzz_targets, one per parser).
#
#   scripts/fuzz.sh                  CI: each target replays its committed corpus
#                                    (fuzz/corpus/TARGET), then fuzzes for 20 s
#   scripts/fuzz.sh --campaign       each target until 10 million runs or 20
#                                    minutes; prints runs, edges and crashes
#   scripts/fuzz.sh --seed           adds seeds made by our own writers and
#                                    encoders (examples/fuzz_seeds.rs) to the corpora
#   scripts/fuzz.sh --minimize       shrinks the committed corpora (cargo fuzz cmin)
#   TARGETS="jpeg config" scripts/fuzz.sh ...   only those targets
#   FUZZ_SECONDS=60 scripts/fuzz.sh  another fuzzing time per target
#
# A crash stops the run: libFuzzer writes the input to fuzz/artifacts/TARGET/
# and the command to replay it is printed. Once fixed, the input goes into
# fuzz/regressions/TARGET/, which every run replays and `--minimize` keeps. Found inputs that reach new code are
# kept in a scratch folder in CI; a campaign adds them to fuzz/corpus, and
# `--minimize` then shrinks it before it is committed.
#
# cargo-fuzz needs unstable compiler flags (-Zsanitizer=address): the stable
# compiler allows them with RUSTC_BOOTSTRAP=1 (seen with stable 1.95, whose
# standard library ships the sanitizer runtimes). No nightly is needed, and
# the fuzz build is made with the same compiler as everything else.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=ci
case "${1:-}" in
"") ;;
--campaign) mode=campaign ;;
--seed) mode=seed ;;
--minimize) mode=minimize ;;
*)
    echo "usage: scripts/fuzz.sh [--campaign | --seed | --minimize]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
# The fuzz workspace's own target folder; CARGO_TARGET_DIR (CI's) would
# mix its sanitizer builds with the tests'.
target_dir=${FUZZ_TARGET_DIR:-fuzz/target}
fuzz() { cargo fuzz "$@" --fuzz-dir fuzz --target-dir "$target_dir"; }

targets=(${TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^livestream-fuzz$')})
jobs=${FUZZ_JOBS:-$(nproc)}

if [ "$mode" = seed ]; then
    seeds=$(mktemp -d)
    cargo run --quiet --example fuzz_seeds -- "$seeds"
    for t in "${targets[@]}"; do
        if [ -d "$seeds/$t" ]; then
            mkdir -p "fuzz/corpus/$t"
            cp "$seeds/$t"/* "fuzz/corpus/$t/"
        fi
    done
    rm -rf "$seeds"
    exit 0
fi

echo "== building ${#targets[@]} fuzz targets ($(rustc --version), RUSTC_BOOTSTRAP=1)"
fuzz build --release --debug-assertions
bin="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

if [ "$mode" = minimize ]; then
    for t in "${targets[@]}"; do
        mkdir -p "fuzz/corpus/$t"
        before=$(ls "fuzz/corpus/$t" | wc -l)
        fuzz cmin --release --debug-assertions "$t" "fuzz/corpus/$t" >/dev/null 2>&1
        echo "$t: $before -> $(ls "fuzz/corpus/$t" | wc -l) inputs"
    done
    exit 0
fi

logs=$(mktemp -d)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [ "$mode" = campaign ]; then
    flags=(-runs=10000000 -max_total_time=1200)
else
    flags=(-max_total_time="${FUZZ_SECONDS:-20}")
fi

# One target: its committed corpus replayed (any crash there is a regression),
# then fuzzing from it into a scratch copy. Prints one summary line.
run_one() {
    local t=$1 corpus="fuzz/corpus/$1" work="$scratch/$1" log="$logs/$1.log"
    # A campaign adds what it finds to the corpus (`--minimize` then shrinks it).
    [ "$mode" = campaign ] && work=$corpus
    mkdir -p "$corpus" "$work" "fuzz/artifacts/$t"
    # The inputs that crashed once (fuzz/regressions/TARGET, never minimised
    # away) and the corpus.
    local replay=("$corpus")
    [ -d "fuzz/regressions/$t" ] && replay+=("fuzz/regressions/$t")
    if ! "$bin/$t" -runs=0 "${replay[@]}" >"$log.replay" 2>&1; then
        echo "$t: FAILED replaying its corpus (see $log.replay)"
        tail -30 "$log.replay"
        return 1
    fi
    local started=$SECONDS dirs=("$work")
    [ "$work" = "$corpus" ] || dirs+=("$corpus")
    if ! "$bin/$t" "${flags[@]}" -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "${dirs[@]}" >"$log" 2>&1; then
        echo "$t: CRASH after $((SECONDS - started)) s; replay with: $bin/$t fuzz/artifacts/$t/<file>"
        grep -E "^(==|SUMMARY|thread|panicked)|artifact" "$log" | head -20
        return 1
    fi
    local runs edges corpus_n
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    corpus_n=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    echo "$t: $runs runs in $((SECONDS - started)) s, $edges edges, corpus $(ls "$corpus" | wc -l) committed / $corpus_n now, no crash"
}
export -f run_one
export bin logs scratch mode
export flags_joined="${flags[*]}"

echo "== fuzzing, $jobs at a time: ${flags[*]}"
failed=0
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'flags=($flags_joined); run_one "$@"' _ {} || failed=1
if [ "$failed" = 1 ]; then
    echo "fuzzing found a failure (logs in $logs)" >&2
    exit 1
fi
rm -rf "$logs"
