#!/usr/bin/env bash
# Debian packages of livestream: /usr/bin/livestream, /etc/livestream/livestream.toml
# (a conffile), and livestream.service (hardened, enabled and started on
# install), from the files in packaging/debian/.
#
#   scripts/package.sh                        amd64 from a release build here, and
#                                             arm64/armhf from scripts/cross.sh's binaries
#   scripts/package.sh --arch arm64           one architecture (amd64, arm64 or armhf)
#   scripts/package.sh --arch arm64 --binary PATH   that architecture from a given binary
#   scripts/package.sh --verify               then checks each package made: amd64 with
#                                             tests/package/verify.sh (installed in a
#                                             chroot), arm64/armhf with
#                                             tests/package/verify-arm.sh (under qemu-user)
#
# amd64 is built here (cargo build --release --features v4l2). arm64 and armhf
# are packaged from the binaries scripts/cross.sh makes (default features and
# v4l2, profile dist: fat LTO, stripped), $CARGO_TARGET_DIR/<triple>/dist/livestream
# (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf), as they are: this
# script builds no ARM binary. With no --arch, an ARM architecture whose binary
# is missing is skipped with a message; with --arch, it is an error. --binary
# PATH packages that binary instead (its architecture is checked against
# --arch). A binary that still has its symbol table is stripped in the package
# (the release build's; the dist ones have none). The .deb files go to
# $CARGO_TARGET_DIR/package (else target/package), and their paths are printed.
#
# The packages are staged as plain trees and built with dpkg-deb (no debhelper,
# no cargo-deb): nothing to install beyond dpkg and binutils, and an ARM binary
# made elsewhere is packaged the same way as one built here. (cargo-deb 3.8
# does build here, `cargo install cargo-deb --locked` in 2 min 44 s; it would
# add that step to a fresh machine and its metadata to Cargo.toml, for what
# these lines do.)
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

arch=""
binary=""
verify=false
while (($#)); do
  case "$1" in
    --arch) arch="${2:?--arch needs amd64, arm64 or armhf}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --verify) verify=true; shift ;;
    -h|--help) usage ;;
    *) echo "package.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$arch" in
  ""|amd64|arm64|armhf) ;;
  *) echo "package.sh: --arch must be amd64, arm64 or armhf, not $arch" >&2; exit 2 ;;
esac
if [[ -n "$binary" && -z "$arch" ]]; then
  echo "package.sh: --binary needs --arch (amd64, arm64 or armhf)" >&2
  exit 2
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target_dir/package"
mkdir -p "$out"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
maintainer="${DEBMAINTAINER:-$(git config user.name 2>/dev/null || echo livestream) <$(git config user.email 2>/dev/null || echo root@localhost)>}"

# The features a camera server needs: the defaults (h264, webrtc; the window
# sinks cost nothing when no window opens) and v4l2 for the camera.
features="v4l2"

# readelf's machine name for each Debian architecture, and the tools that
# strip such a binary (the first one found).
elf_machine() {
  case "$1" in
    amd64) echo "Advanced Micro Devices X86-64" ;;
    arm64) echo "AArch64" ;;
    armhf) echo "ARM" ;;
  esac
}
# The Rust target whose dist binary scripts/cross.sh makes for each ARM architecture.
rust_target() {
  case "$1" in
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
  esac
}
strip_tools() {
  case "$1" in
    amd64) echo "strip x86_64-linux-gnu-strip" ;;
    arm64) echo "aarch64-linux-gnu-strip" ;;
    armhf) echo "arm-linux-gnueabihf-strip" ;;
  esac
}

# Depends, from the libraries the binary links (readelf works on any
# architecture, where dpkg-shlibdeps needs the target's libraries installed):
# libc6 at the newest GLIBC_ symbol version it needs; libstdc++6 (openh264 is
# C++) at the GCC of its newest GLIBCXX_ symbol from 3.4.29 (GCC 11) up, older
# ones being in every Debian whose glibc is new enough; libgcc-s1 unversioned
# (every libgcc-s1 package is GCC 10 or later).
depends_of() {
  local bin="$1" needed glibc glibcxx deps=()
  needed="$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')"
  glibc="$(readelf -V "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
  deps+=("libc6 (>= ${glibc:-2.31})")
  local lib
  for lib in $needed; do
    case "$lib" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
      libgcc_s.so.1) deps+=("libgcc-s1") ;;
      libstdc++.so.6)
        glibcxx="$(readelf -V "$bin" | grep -o 'GLIBCXX_3\.4\.[0-9]*' | sed 's/GLIBCXX_3\.4\.//' | sort -n | tail -n1)"
        case "${glibcxx:-0}" in
          29) deps+=("libstdc++6 (>= 11)") ;;
          30) deps+=("libstdc++6 (>= 12)") ;;
          31) deps+=("libstdc++6 (>= 13)") ;;
          32) deps+=("libstdc++6 (>= 14)") ;;
          *) deps+=("libstdc++6") ;;
        esac ;;
      *)
        echo "package.sh: $bin links $lib, which this script does not map to a Debian package" >&2
        exit 1 ;;
    esac
  done
  local IFS=, joined
  joined="${deps[*]}"
  echo "${joined//,/, }"
}

# Stages the tree for one architecture and builds its .deb.
package() {
  local arch="$1" bin="$2"
  local machine
  machine="$(elf_machine "$arch")"
  if ! readelf -h "$bin" | grep -q "Machine: *$machine\$"; then
    echo "package.sh: $bin is not a binary for $arch: $(readelf -h "$bin" | sed -n 's/ *Machine: *//p')" >&2
    exit 1
  fi
  if [[ "$arch" == armhf ]] && ! readelf -h "$bin" | grep -q "hard-float ABI"; then
    echo "package.sh: $bin is 32-bit ARM but not hard-float (armhf needs armv7-unknown-linux-gnueabihf)" >&2
    exit 1
  fi

  local stage="$out/stage-$arch"
  rm -rf "$stage"
  install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/livestream" \
    "$stage/lib/systemd/system" "$stage/usr/share/doc/livestream/examples"

  install -m 0755 "$bin" "$stage/usr/bin/livestream"
  # A binary built stripped (profile dist) goes in byte for byte.
  if readelf -S "$bin" | grep -q ' \.symtab '; then
    local tool stripped=""
    for tool in $(strip_tools "$arch"); do
      if command -v "$tool" >/dev/null; then
        "$tool" --strip-unneeded "$stage/usr/bin/livestream"
        stripped="$tool"
        break
      fi
    done
    if [[ -z "$stripped" ]]; then
      echo "package.sh: no $(strip_tools "$arch") here: the $arch binary goes in unstripped" >&2
    fi
  fi

  install -m 0644 packaging/debian/livestream.toml "$stage/etc/livestream/livestream.toml"
  install -m 0644 packaging/debian/livestream.service "$stage/lib/systemd/system/livestream.service"
  install -m 0644 README.md packaging/debian/copyright "$stage/usr/share/doc/livestream/"
  # Every key with its default, for reference beside the short conffile.
  install -m 0644 livestream.toml "$stage/usr/share/doc/livestream/livestream.toml"
  install -m 0644 packaging/debian/libcamerify.conf "$stage/usr/share/doc/livestream/examples/libcamerify.conf"

  install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
  echo /etc/livestream/livestream.toml >"$stage/DEBIAN/conffiles"
  local size
  size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
  cat >"$stage/DEBIAN/control" <<EOF
Package: livestream
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $(depends_of "$stage/usr/bin/livestream")
Suggests: libcamera-v4l2
Section: video
Priority: optional
Description: low-latency live video from a camera to screens on the same network
 livestream serve captures a camera (V4L2) once, encodes it once (H.264 or
 JPEG) and streams it to any number of viewers on the local network:
 livestream view, a browser (WebRTC or MJPEG), or RTSP clients such as VLC
 and Home Assistant. Viewers pair once with a code and are encrypted.
 .
 This package runs livestream serve as a hardened systemd service
 (livestream.service), configured in /etc/livestream/livestream.toml; the
 pairing code is in journalctl -u livestream.
EOF
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$stage/DEBIAN/md5sums"
  chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/control"

  local deb="$out/livestream_${version}_${arch}.deb"
  # --root-owner-group: every file root:root whoever builds it.
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
  echo "$deb"
}

built_here() {
  cargo build --release --locked --features "$features" >&2
  echo "$target_dir/release/livestream"
}

# scripts/cross.sh's binary for an ARM architecture, if it is there.
cross_built() {
  local bin
  bin="$target_dir/$(rust_target "$1")/dist/livestream"
  [[ -f "$bin" ]] && echo "$bin"
}

made=()
if [[ -n "$arch" ]]; then
  if [[ -n "$binary" ]]; then
    made+=("$(package "$arch" "$binary")")
  elif [[ "$arch" == amd64 ]]; then
    made+=("$(package amd64 "$(built_here)")")
  elif bin="$(cross_built "$arch")"; then
    made+=("$(package "$arch" "$bin")")
  else
    echo "package.sh: no $arch binary: scripts/cross.sh makes $target_dir/$(rust_target "$arch")/dist/livestream (or give --binary PATH)" >&2
    exit 2
  fi
else
  made+=("$(package amd64 "$(built_here)")")
  for a in arm64 armhf; do
    if bin="$(cross_built "$a")"; then
      made+=("$(package "$a" "$bin")")
    else
      echo "package.sh: $a skipped: no $target_dir/$(rust_target "$a")/dist/livestream (scripts/cross.sh makes it)" >&2
    fi
  done
fi
printf '%s\n' "${made[@]}"

if $verify; then
  for deb in "${made[@]}"; do
    case "$deb" in
      *_amd64.deb) tests/package/verify.sh "$deb" ;;
      *) tests/package/verify-arm.sh "$deb" ;;
    esac
  done
fi
