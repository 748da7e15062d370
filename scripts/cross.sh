#!/usr/bin/env bash
# Builds livestream for a Raspberry Pi on a Debian x86_64 machine: aarch64 (Pi 3/4/5
# on a 64-bit OS) and armv7 (32-bit Raspberry Pi OS; Pi 2-4, Zero 2), with the
# default features and `v4l2` (the camera source; `features` below). Nothing
# needs a library on the Pi beyond libc, libstdc++ and libgcc: openh264 is C++;
# ring, and aws-lc-sys for WebRTC's certificate, are C; v4l2's kernel bindings
# are generated here by bindgen (libclang) from the target's videodev2.h in
# Debian's linux-libc-dev-*-cross. Installs Debian's cross compilers, those
# headers, libclang and the rustup targets when missing. Safe to run again.
#
#   scripts/cross.sh            the binaries to copy to a Pi: stripped, with LTO
#                               (profile dist), target/<triple>/dist/livestream
#   scripts/cross.sh --dist     the same for x86_64 too, with every binary's size
#   scripts/cross.sh --test     the library's unit tests (with the same features),
#                               the V4L2 struct layouts against the cross gcc's,
#                               and a serve -> view over loopback, ARM binaries
#                               under qemu-user
#
# Further arguments name the targets (aarch64, armv7), both by default.
#
# The linkers, compilers, bindgen's clang arguments and the qemu runner are set
# here as environment variables, not in a checked-in .cargo/config.toml: they
# name Debian's packages and sysroot paths (/usr/aarch64-linux-gnu), which
# another distribution spells differently, and a config file would apply them
# to every cargo command in the tree while this script is the one place that
# installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
targets=()
for arg in "$@"; do
  case $arg in
    --test) mode="test" ;;
    --dist) mode=dist ;;
    aarch64 | aarch64-unknown-linux-gnu) targets+=(aarch64-unknown-linux-gnu) ;;
    armv7 | armv7-unknown-linux-gnueabihf) targets+=(armv7-unknown-linux-gnueabihf) ;;
    *)
      echo "usage: scripts/cross.sh [--test | --dist] [aarch64] [armv7]" >&2
      exit 2
      ;;
  esac
done
((${#targets[@]})) || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

# The features beyond the defaults that every ARM build (and its tests) has: the
# camera. One word per feature; each must build with the cross compilers and
# the packages below alone.
features=(v4l2)
feature_args=(--features "$(IFS=,; echo "${features[*]}")")

# Debian's names for each target: the compilers' prefix, and qemu-user's binary.
gnu_prefix() {
  case $1 in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
  esac
}
clang_target() {
  case $1 in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo armv7-linux-gnueabihf ;;
  esac
}
qemu_for() {
  case $1 in
    aarch64-unknown-linux-gnu) echo qemu-aarch64 ;;
    armv7-unknown-linux-gnueabihf) echo qemu-arm ;;
  esac
}

# --- what the build needs ----------------------------------------------------
pkgs=()
for t in "${targets[@]}"; do
  # The libc6-dev-*-cross sysroot (headers, crt files, libc to link) is only
  # recommended by the compilers, so it is named here;
  # linux-libc-dev-*-cross: the target's kernel headers (videodev2.h and the
  # asm/ headers it includes), for bindgen; it comes with libc6-dev-*-cross.
  case $t in
    aarch64*) pkgs+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross) ;;
    armv7*) pkgs+=(gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross) ;;
  esac
done
# libclang: bindgen (v4l2's bindings) loads it on this machine, whatever the target.
pkgs+=(libclang-dev)
[[ $mode == test ]] && pkgs+=(qemu-user)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# --- per-target environment --------------------------------------------------
# cargo links with the cross gcc (which knows its sysroot); cc-rs, which builds
# openh264, ring and aws-lc-sys, takes CC_/CXX_/AR_<triple>; the runner makes
# `cargo test --target` run the test binaries under qemu-user, with -L pointing
# the emulated dynamic loader at the cross sysroot.
for t in "${targets[@]}"; do
  p=$(gnu_prefix "$t")
  T=${t^^}
  T=${T//-/_}
  u=${t//-/_}
  export "CARGO_TARGET_${T}_LINKER=$p-gcc"
  export "CARGO_TARGET_${T}_RUNNER=$(qemu_for "$t") -L /usr/$p"
  export "CC_$u=$p-gcc" "CXX_$u=$p-g++" "AR_$u=$p-ar"
  # bindgen (v4l2-sys-mit's build script) parses the target's headers
  # (linux/videodev2.h, asm/, sys/time.h for struct timeval) from Debian's
  # cross packages, with the target's clang, not the x86_64 ones in
  # /usr/include. Belt and braces here: bindgen already passes --target from
  # cargo, libclang found the cross headers without the sysroot, and the
  # structs come out in C-named Rust types (c_long) that rustc sizes for the
  # target; tests/arm/v4l2_layout.c and the unit test check the result
  # (docs/arm.md).
  export "BINDGEN_EXTRA_CLANG_ARGS_$u=--target=$(clang_target "$t") --sysroot=/usr/$p"
done

# The number of frames in a recording of the file sink (src/media/recording.rs:
# a 32-byte header, then per frame `FRAM`, sequence, time, a little-endian u32
# length at offset 20 and the data), checking every record's tag.
count_records() {
  local file=$1 size at=32 n=0 len
  size=$(stat -c %s "$file")
  while ((at < size)); do
    [[ $(od -An -c -j "$at" -N 4 "$file" | tr -d ' ') == FRAM ]] || { echo "-1"; return; }
    len=$(od -An -t u4 --endian=little -j $((at + 20)) -N 4 "$file" | tr -d ' ')
    at=$((at + 24 + len))
    n=$((n + 1))
  done
  ((at == size)) || { echo "-1"; return; }
  echo "$n"
}

# serve -> view over loopback with one binary under qemu-user (RUNNER BIN): for
# each codec, plaintext and then paired and encrypted, the viewer records
# FRAMES frames with the file sink and must end on its own with status 0.
serve_view() {
  local runner=$1 bin=$2 frames=60 dir codec auth
  dir=$(mktemp -d)
  # Keys and pins go to a throw-away config directory, not the user's.
  export XDG_CONFIG_HOME=$dir/config
  for codec in h264 jpeg lz4; do
    for auth in none pair; do
      local set_auth=() out=$dir/serve-$codec-$auth.log addr="" code="" n
      [[ $auth == none ]] && set_auth=(--set 'serve.auth="none"')
      : >"$out" # before the background job opens it, which the loop below reads
      # shellcheck disable=SC2086 # the runner is a command with its arguments
      $runner "$bin" serve --listen 127.0.0.1:0 --source test-pattern --codec "$codec" \
        --width 320 --height 240 --fps 30 --duration 300 "${set_auth[@]}" >"$out" 2>&1 &
      local pid=$!
      # Wait for the address (and the pairing code) on serve's output, 60 s at most.
      for ((n = 0; n < 600; n++)); do
        addr=$(sed -n 's/^listening on //p' "$out")
        code=$(sed -n 's/^pairing code: \([0-9-]*\).*/\1/p' "$out")
        [[ -n $addr && ($auth == none || -n $code) ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if [[ -z $addr ]]; then
        cat "$out" >&2
        echo "FAIL $codec/$auth: serve did not start listening" >&2
        kill "$pid" 2>/dev/null || true
        return 1
      fi
      local view_auth=(--set 'view.auth="none"')
      [[ $auth == pair ]] && view_auth=(--pair "$code")
      local start=$SECONDS status=0
      # shellcheck disable=SC2086
      timeout 300 $runner "$bin" view "$addr" --sink file --set "sinks.file.path=$dir/$codec-$auth.rec" \
        --frames "$frames" --no-reconnect -q "${view_auth[@]}" || status=$?
      kill -INT "$pid" 2>/dev/null || true
      wait "$pid" || true
      local got=-1
      [[ -s $dir/$codec-$auth.rec ]] && got=$(count_records "$dir/$codec-$auth.rec")
      if ((status != 0 || got != frames)); then
        cat "$out" >&2
        echo "FAIL $codec/$auth: view exited with $status, recorded $got frames of $frames" >&2
        return 1
      fi
      echo "ok   $codec/$auth: $frames frames in $((SECONDS - start)) s, $(stat -c %s "$dir/$codec-$auth.rec") bytes recorded"
    done
  done
  rm -rf "$dir"
}

# tests/arm/v4l2_layout.c built with the C compiler CC and run with RUNNER
# (empty: natively) must print the layout in EXPECTED, the file the unit test
# layouts_are_the_c_compilers compares bindgen's structs with on that target.
c_layout() {
  local cc=$1 runner=$2 expected=$3 exe
  exe=$(mktemp)
  "$cc" -std=gnu11 -Wall -Werror -O1 -o "$exe" tests/arm/v4l2_layout.c
  # shellcheck disable=SC2086 # the runner is a command with its arguments
  if ! $runner "$exe" | diff -u "$expected" -; then
    echo "FAIL: $cc's V4L2 layout is not $expected" >&2
    rm -f "$exe"
    return 1
  fi
  rm -f "$exe"
  echo "ok   $cc: the V4L2 structs and requests are $expected"
}
layout_file() {
  case $1 in
    x86_64* | aarch64*) echo tests/arm/v4l2-layout-lp64.txt ;;
    armv7*) echo tests/arm/v4l2-layout-armhf.txt ;;
  esac
}

target_dir=${CARGO_TARGET_DIR:-target}
jobs=(-j "${CARGO_BUILD_JOBS:-2}")

case $mode in
  build | dist)
    [[ $mode == dist ]] && targets=(x86_64-unknown-linux-gnu "${targets[@]}")
    for t in "${targets[@]}"; do
      cargo build "${jobs[@]}" --profile dist --target "$t" "${feature_args[@]}"
      bin=$target_dir/$t/dist/livestream
      echo "$t: $bin, $(stat -c %s "$bin") bytes"
    done
    ;;

  test)
    # The ci profile, as scripts/test.sh: optimised (under emulation every
    # instruction costs some ten times more) with debug assertions and overflow
    # checks, which matter on armv7 where usize is 32 bits.
    c_layout cc "" "$(layout_file x86_64)"
    for t in "${targets[@]}"; do
      c_layout "$(gnu_prefix "$t")-gcc" "$(qemu_for "$t") -L /usr/$(gnu_prefix "$t")" "$(layout_file "$t")"
      echo "== $t: unit tests under $(qemu_for "$t")" >&2
      start=$SECONDS
      # qemu-user 7.2 answers TCP_INFO with 4 bytes (a native kernel: 232), so
      # the test of what the kernel measured cannot run under it.
      cargo test "${jobs[@]}" --profile ci --target "$t" "${feature_args[@]}" --lib -- --test-threads=2 \
        --skip net::socket::tests::tcp_info_reads_what_the_kernel_measured
      echo "== $t: unit tests took $((SECONDS - start)) s (build included)" >&2
      cargo build "${jobs[@]}" --profile ci --target "$t" "${feature_args[@]}" --bin livestream
      start=$SECONDS
      serve_view "$(qemu_for "$t") -L /usr/$(gnu_prefix "$t")" "$target_dir/$t/ci/livestream"
      echo "== $t: serve -> view took $((SECONDS - start)) s" >&2
    done
    ;;
esac
