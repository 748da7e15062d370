#!/usr/bin/env bash
# Checks an arm64 or armhf livestream .deb on this x86_64 machine, without
# binfmt_misc (which this machine does not have mounted):
#
#   - dpkg-deb: the Architecture field, the files, and that the packaged binary
#     is an ELF for that architecture (`file`);
#   - the package unpacked (dpkg-deb -x) over a Debian 12 (bookworm) minbase
#     tree of that architecture, made with `debootstrap --foreign` (unpacked
#     only: nothing in it is ever run) as dpkg would, and the binary run with qemu-user
#     taking its loader and libraries from that tree (`qemu-aarch64 -L TREE`):
#     Debian's own arm64/armhf libc6, libstdc++6 and libgcc-s1 rather than the
#     cross compilers' copies;
#   - livestream --version; livestream backends, where the v4l2 source must be
#     in the build (with no /dev/video* here it says "unavailable");
#   - the unit's ExecStart with the packaged /etc/livestream/livestream.toml,
#     on loopback for 3 s, its key in the tree's /var/lib/livestream.
#
# Not done here (tests/package/verify.sh does it for amd64 in a chroot): dpkg -i,
# whose maintainer scripts are the tree's ARM shell and tools, which only
# binfmt_misc would let a chroot run; the unprivileged user; systemd-analyze.
#
#   tests/package/verify-arm.sh PATH/livestream_VERSION_arm64.deb    (or _armhf)
#
# The unpacked tree is kept as a tarball in $CARGO_TARGET_DIR/package (else
# target/package), made once per architecture (a minute or so); every run
# unpacks a fresh copy. Needs root (debootstrap), debootstrap and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cache="$target_dir/package"
mkdir -p "$cache"

fail() {
  echo "verify-arm: FAILED: $*" >&2
  exit 1
}
step() { echo "verify-arm: $*"; }

deb="${1:?usage: tests/package/verify-arm.sh PATH/livestream_VERSION_ARCH.deb (arm64 or armhf)}"
[[ -f "$deb" ]] || fail "no such package: $deb"
arch="$(dpkg-deb -f "$deb" Architecture)"
case "$arch" in
  arm64) qemu=qemu-aarch64 elf="ELF 64-bit LSB pie executable, ARM aarch64" ;;
  armhf) qemu=qemu-arm elf="ELF 32-bit LSB pie executable, ARM, EABI5 version 1 (SYSV)" ;;
  *) fail "$deb is for $arch, not arm64 or armhf" ;;
esac
for tool in debootstrap "$qemu" dpkg-deb file; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install debootstrap qemu-user file)"
done

base="$cache/bookworm-minbase-$arch-foreign.tar"
if [[ ! -f "$base" ]]; then
  tmp="$(mktemp -d "$cache/debootstrap-$arch.XXXXXX")"
  step "debootstrap --foreign --arch=$arch --variant=minbase bookworm (once; cached in $base)"
  debootstrap --foreign --arch="$arch" --variant=minbase bookworm "$tmp" http://deb.debian.org/debian \
    >"$cache/debootstrap-$arch.log" 2>&1 || fail "debootstrap: see $cache/debootstrap-$arch.log"
  tar -C "$tmp" -cf "$base.part" .
  mv "$base.part" "$base"
  rm -rf "$tmp"
fi

root="$(mktemp -d "$cache/tree-$arch.XXXXXX")"
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$base"

step "dpkg-deb --info: Package, Version, Architecture, Depends"
for field in Package Version Architecture Depends; do
  echo "  $field: $(dpkg-deb -f "$deb" "$field")"
done
step "dpkg-deb --contents"
contents="$(dpkg-deb --contents "$deb")"
awk '{print "  " $1, $2, $6}' <<<"$contents"
for f in ./usr/bin/livestream ./etc/livestream/livestream.toml ./lib/systemd/system/livestream.service; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done

# As dpkg unpacks: through the tree's directory symlinks (/lib is usr/lib), which
# dpkg-deb -x would replace with directories.
dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root"
bin="$root/usr/bin/livestream"
step "file /usr/bin/livestream"
desc="$(file -b "$bin")"
echo "  $desc"
[[ "$desc" == "$elf"* ]] || fail "not an $arch binary: $desc"
readelf -h "$bin" | grep -q "hard-float ABI" || [[ "$arch" == arm64 ]] || fail "armhf binary without the hard-float ABI"

run() { "$qemu" -L "$root" "$bin" "$@"; }
step "$qemu -L TREE: livestream --version, backends"
run --version | sed 's/^/  /'
run backends >"$cache/backends-$arch.log" 2>&1 || fail "livestream backends: $(cat "$cache/backends-$arch.log")"
sed 's/^/  /' "$cache/backends-$arch.log"
grep -Eq '^  v4l2 +(available|unavailable)' "$cache/backends-$arch.log" ||
  fail "the v4l2 source is not in this build: $(grep -A1 '^  v4l2' "$cache/backends-$arch.log")"

step "the unit's ExecStart with the packaged configuration, 3 s on loopback"
exec_start="$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/livestream.service")"
[[ "$exec_start" == "/usr/bin/livestream --config /etc/livestream/livestream.toml serve" ]] ||
  fail "unexpected ExecStart: $exec_start"
install -d -m 0700 "$root/var/lib/livestream"
# The tree's paths for /etc and /var/lib (qemu's -L is for the loader and
# libraries only); no mDNS announcement from this machine.
run --config "$root/etc/livestream/livestream.toml" serve --duration 3 \
  --set serve.listen=127.0.0.1:0 --set "serve.key-dir=\"$root/var/lib/livestream\"" \
  --set serve.discovery=false >"$cache/serve-$arch.log" 2>&1 ||
  fail "serve: $(cat "$cache/serve-$arch.log")"
grep -q '^pairing code: ' "$cache/serve-$arch.log" || fail "serve printed no pairing code: $(cat "$cache/serve-$arch.log")"
sed 's/^/  /' "$cache/serve-$arch.log"
[[ "$(stat -c %a "$root/var/lib/livestream/server.key")" == 600 ]] || fail "no server.key with mode 0600"

step "passed"
