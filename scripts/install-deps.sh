#!/usr/bin/env bash
# Installs the Debian packages livestream needs to build with `--features full`
# and, with `--test`, what its tests drive (ffmpeg). Safe to run again: it
# installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

build_pkgs=(pkg-config)
test_pkgs=(ffmpeg)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
