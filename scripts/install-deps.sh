#!/usr/bin/env bash
# Installs what livestream needs from Debian (and, for the browser test, npm) to
# build with `--features full` and, with `--test`, what its tests drive: ffmpeg,
# Debian's Chromium driven by playwright-core, promtool, Xvfb with xdotool, and
# qemu for the VM with the vivid camera driver. Safe to run again:
# it installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# cmake and nasm: the turbojpeg feature builds libjpeg-turbo 3 from source;
# libsdl2-dev: the sdl2 window sink; libclang-dev: the v4l2 source's kernel
# bindings are generated with bindgen.
build_pkgs=(pkg-config cmake nasm libsdl2-dev libclang-dev)
# Xvfb, openbox (full screen needs a window manager) and xdotool: the window
# tests; ffmpeg also grabs their screenshots.
# qemu and the rest: tests/vivid/run-vivid-vm.sh boots a kernel with the vivid
# V4L2 driver (v4l-utils: v4l2-ctl in the guest); make, gcc-12 (the compiler
# Debian's kernel was built with) and libelf1 (objtool): tests/vivid/modules.sh
# builds vicodec and v4l2loopback for that kernel; gcc and libc6-dev: the static
# frame feeder the vivid tests run in the guest (tests/vivid/v4l2feed.c).
# iproute2 (ip, tc): the tests' network namespaces (discovery, a slow link, a
# connection flood); iptables: a namespace where UDP is blocked (the page
# falls back from WebRTC); util-linux: unshare --time (clocks that disagree).
# GStreamer (rtspsrc, rtph264depay, avdec_h264): a second RTSP client;
# janus: a media server that pulls our RTSP and serves browsers over WebRTC.
test_pkgs=(ffmpeg chromium prometheus xvfb openbox xdotool nodejs npm
  qemu-system-x86 busybox-static kmod cpio v4l-utils zstd xz-utils file
  make gcc gcc-12 libc6-dev libelf1
  iproute2 iptables util-linux gstreamer1.0-tools gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-libav janus)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  # nodejs/npm may come from elsewhere than Debian (as on the development image).
  if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null; then
    continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" && ! -d tests/browser/node_modules/playwright-core ]]; then
  # playwright-core only: it drives /usr/bin/chromium and downloads no browser.
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
