#!/usr/bin/env bash
# modules.sh - build the kernel modules Debian's kernel leaves out, for exactly
# the kernel run-vivid-vm.sh boots, and print the folder that holds them:
#
#   vicodec.ko       the kernel's stateful M2M test codec (FWHT encoder and
#                    decoder; module parameter multiplanar=0|1)
#   v4l2-mem2mem.ko  the M2M framework vicodec needs: Debian's amd64 kernel
#                    does not set CONFIG_V4L2_MEM2MEM_DEV, so its
#                    Module.symvers has no v4l2_m2m_* and no in-tree copy exists
#   v4l2loopback.ko  a video node whose frames a program writes (Debian's
#                    v4l2loopback-dkms source)
#
# Nothing is installed: the packages are fetched with `apt-get download` and
# unpacked into a scratch folder, the modules are built with
# `make -C <headers> M=<dir> modules`, and only the .ko files are kept, in
# $VIVID_VM_CACHE/$KERNEL_PKG.modules (a second run prints that folder at once).
# Load them with run-vivid-vm.sh --module DIR/v4l2-mem2mem.ko --module
# DIR/vicodec.ko=multiplanar=1 --module DIR/v4l2loopback.ko=exclusive_caps=1
# (in that order: vicodec needs v4l2-mem2mem).
#
# The headers are Debian's linux-headers-<kver> (+ its -common and the
# linux-kbuild-* it names), at the version apt offers for them; the sources
# come from linux-source-<major.minor> at that same version. The kernel was
# built with gcc-12 (the headers' CC), which is bookworm's gcc: no flag needed.
# Environment: VIVID_VM_CACHE, KERNEL_PKG and VIVID_VM_SETUP as run-vivid-vm.sh.
set -euo pipefail

log() { printf '[modules %s] %s\n' "$(date +%T)" "$*" >&2; }
cache=${VIVID_VM_CACHE:-./.vivid-vm-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if [[ -z ${KERNEL_PKG:-} ]]; then
  KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $KERNEL_PKG ]] || { apt-get update -qq; KERNEL_PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
fi
out=$cache/$KERNEL_PKG.modules
if [[ -f $out/.done ]]; then echo "$out"; exit 0; fi

kver=${KERNEL_PKG#linux-image-}                 # 6.1.0-57-amd64
series=$(cut -d. -f1,2 <<<"$kver")              # 6.1

# host tools: make, and the compiler the kernel was built with
need_pkgs=()
command -v make >/dev/null || need_pkgs+=(make)
command -v gcc-12 >/dev/null || need_pkgs+=(gcc-12)
[[ -e /usr/lib/x86_64-linux-gnu/libelf.so.1 ]] || need_pkgs+=(libelf1)   # objtool
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if [[ ${#need_pkgs[@]} -gt 0 && ${VIVID_VM_SETUP:-1} != 0 ]]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vivid-modules.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# ---- 1. packages (downloaded and unpacked, never installed) ------------------------
headers=linux-headers-$kver
version=$(apt-cache show "$headers" 2>/dev/null | awk '/^Version:/{print $2; exit}')
[[ -n $version ]] || { apt-get update -qq; version=$(apt-cache show "$headers" | awk '/^Version:/{print $2; exit}'); }
[[ -n $version ]] || { echo "apt knows no $headers" >&2; exit 3; }
deps=$(apt-cache show "$headers=$version" | awk -F': ' '/^Depends:/{print $2; exit}')
common=$(grep -oE 'linux-headers-[^ ,]+-common' <<<"$deps" | head -1)
kbuild=$(grep -oE 'linux-kbuild-[0-9.]+' <<<"$deps" | head -1)
pkgs=("$headers=$version" "$common=$version" "$kbuild=$version"
  "linux-source-$series=$version" v4l2loopback-dkms)
log "downloading ${pkgs[*]}"
apt-get download "${pkgs[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
for p in "$headers" "$common" "$kbuild"; do
  dpkg -x "$(ls "$p"_*.deb)" root
done
dpkg -x "$(ls v4l2loopback-dkms_*.deb)" root
hdir=$work/root/usr/src/$headers
# the headers' Makefile includes the -common one by its installed path
sed -i "s#/usr/src/#$work/root/usr/src/#" "$hdir/Makefile"
src=linux-source-$series
dpkg-deb --fsys-tarfile "$(ls "$src"_*.deb)" | tar -xO "./usr/src/$src.tar.xz" | xz -dc -T2 |
  tar -x "$src/drivers/media/test-drivers/vicodec" "$src/drivers/media/v4l2-core/v4l2-mem2mem.c"
rm -f ./*.deb

# ---- 2. build -----------------------------------------------------------------------
mkdir m2m loop
cp "$src"/drivers/media/test-drivers/vicodec/*.[ch] "$src/drivers/media/v4l2-core/v4l2-mem2mem.c" m2m/
# one folder, so modpost resolves vicodec's v4l2_m2m_* against v4l2-mem2mem here
printf '%s\n' 'obj-m := v4l2-mem2mem.o vicodec.o' \
  'vicodec-objs := vicodec-core.o codec-fwht.o codec-v4l2-fwht.o' >m2m/Kbuild
cp -r root/usr/src/v4l2loopback-*/. loop/
for d in m2m loop; do
  log "building $d against $headers $version"
  if ! make -C "$hdir" M="$work/$d" modules >"$d.log" 2>&1; then
    grep -E 'error|Error|ERROR' "$d.log" | head -20 >&2
    echo "building $d failed (the log above; all of it was in $work/$d.log)" >&2
    exit 4
  fi
done

# ---- 3. keep the modules ------------------------------------------------------------
rm -rf "$out.tmp"; mkdir -p "$out.tmp"
cp m2m/v4l2-mem2mem.ko m2m/vicodec.ko loop/v4l2loopback.ko "$out.tmp/"
loopver=$(basename root/usr/src/v4l2loopback-*)
printf 'kernel %s\nheaders %s %s\nsource %s %s\n%s\ncompiler %s\n' "$kver" "$headers" "$version" \
  "$src" "$version" "$loopver" "$(gcc-12 --version | head -1)" >"$out.tmp/versions"
touch "$out.tmp/.done"
rm -rf "$out"; mv "$out.tmp" "$out"
log "built $(cd "$out" && echo ./*.ko) in $out"
echo "$out"
