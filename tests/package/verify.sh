#!/usr/bin/env bash
# Installs an amd64 livestream .deb in a fresh Debian 12 (bookworm) minbase
# chroot, where no systemd runs, and checks what the package promises:
#
#   - dpkg -i succeeds: the maintainer scripts do not fail without systemd,
#     and start nothing (no /run/systemd/system);
#   - every file is in place with its mode and owner; the conffile is
#     registered; the service is enabled (the multi-user.target.wants link);
#   - livestream --help, --version and backends run;
#   - the unit's own ExecStart, run as an unprivileged user whose only
#     writable place is /var/lib/livestream (as DynamicUser and StateDirectory
#     give it), reads /etc/livestream/livestream.toml, streams, and keeps its
#     key in /var/lib/livestream with mode 0600;
#   - systemd-analyze verify passes on the installed unit, and
#     systemd-analyze security prints its exposure score;
#   - reinstalling (an upgrade) keeps a changed conffile and the enablement;
#     remove keeps the conffile and keys; purge removes them, the enablement
#     and the state directory.
#
#   tests/package/verify.sh PATH/livestream_VERSION_amd64.deb
#   tests/package/verify.sh --prepare        only make the base chroot
#
# The minbase tree is made once with debootstrap (from the mirror this
# machine's apt uses; a few minutes) and kept as a tarball in
# $CARGO_TARGET_DIR/package (else target/package); every run unpacks a fresh
# copy of it. Delete the tarball to debootstrap again. Needs root (chroot,
# mount), debootstrap and systemd (for systemd-analyze) on this machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cache="$target_dir/package"
base="$cache/bookworm-minbase.tar"
mkdir -p "$cache"

fail() {
  echo "verify: FAILED: $*" >&2
  exit 1
}
step() { echo "verify: $*"; }

for tool in debootstrap systemd-analyze dpkg-deb; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install debootstrap systemd)"
done

make_base() {
  local mirror tmp
  # The first URIs line of this machine's Debian source (deb822 or one-line form).
  mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -m1 '/debian$' || true)"
  if [[ -z "$mirror" ]]; then
    mirror="$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\/debian\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)"
  fi
  mirror="${mirror:-http://deb.debian.org/debian}"
  tmp="$(mktemp -d "$cache/debootstrap.XXXXXX")"
  step "debootstrap --variant=minbase bookworm from $mirror (once; cached in $base)"
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    fail "debootstrap: see $cache/debootstrap.log"
  tar -C "$tmp" -cf "$base.part" .
  mv "$base.part" "$base"
  rm -rf "$tmp"
}

[[ -f "$base" ]] || make_base
if [[ "${1:-}" == "--prepare" ]]; then
  exit 0
fi
deb="${1:?usage: tests/package/verify.sh PATH/livestream_VERSION_amd64.deb}"
[[ -f "$deb" ]] || fail "no such package: $deb"
[[ "$(dpkg-deb -f "$deb" Architecture)" == amd64 ]] || fail "$deb is not an amd64 package"

root="$(mktemp -d "$cache/chroot.XXXXXX")"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
# mktemp made it 0700: the chroot's / must be 0755 for the unprivileged run below.
chmod 0755 "$root"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/livestream.deb"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

[[ ! -e "$root/run/systemd/system" ]] || fail "the chroot has /run/systemd/system: it would look like a running systemd"

step "dpkg -i (no systemd running)"
in_root dpkg -i /tmp/livestream.deb >"$cache/dpkg-install.log" 2>&1 ||
  fail "dpkg -i: $(cat "$cache/dpkg-install.log")"
[[ "$(in_root dpkg-query -W -f='${db:Status-Abbrev}' livestream)" == "ii " ]] || fail "livestream is not installed and configured"

step "files, modes and owners"
expect_file() { # path mode uid:gid (numbers: the chroot's names are not this machine's)
  local got
  got="$(stat -c '%a %u:%g' "$root$1" 2>/dev/null)" || fail "$1 is missing"
  [[ "$got" == "$2 $3" ]] || fail "$1 is $got, expected $2 $3"
  echo "  $2 $3 $1"
}
expect_file /usr/bin/livestream 755 0:0
expect_file /etc/livestream 755 0:0
expect_file /etc/livestream/livestream.toml 644 0:0
expect_file /lib/systemd/system/livestream.service 644 0:0
expect_file /usr/share/doc/livestream/copyright 644 0:0
expect_file /usr/share/doc/livestream/livestream.toml 644 0:0
expect_file /usr/share/doc/livestream/examples/libcamerify.conf 644 0:0
# Everything the package ships is root's, and nothing is setuid or world-writable.
bad="$(in_root dpkg -L livestream | while read -r f; do
  [[ -e "$root$f" ]] && stat -c '%a %u:%g %n' "$root$f"
done | grep -v '^[0-7]* 0:0 ' || true)"
[[ -z "$bad" ]] || fail "not root's: $bad"
bad="$(in_root dpkg -L livestream | while read -r f; do
  [[ -e "$root$f" ]] && find "$root$f" -maxdepth 0 ! -type l \( -perm -4000 -o -perm -2000 -o -perm -0002 \) -print
done)"
[[ -z "$bad" ]] || fail "setuid, setgid or world-writable: $bad"
cmp -s packaging/debian/livestream.toml "$root/etc/livestream/livestream.toml" ||
  fail "/etc/livestream/livestream.toml is not packaging/debian/livestream.toml"

step "conffile registered"
conffiles="$(in_root dpkg-query -W -f='${Conffiles}' livestream)"
echo "  $conffiles"
sum="$(md5sum <"$root/etc/livestream/livestream.toml" | cut -d' ' -f1)"
grep -q "^ */etc/livestream/livestream.toml $sum\$" <<<"$conffiles" ||
  fail "conffile not registered with its md5sum $sum: $conffiles"

step "enabled, not started"
link="$root/etc/systemd/system/multi-user.target.wants/livestream.service"
[[ "$(readlink "$link")" == /lib/systemd/system/livestream.service ]] ||
  fail "not enabled: $link is $(readlink "$link" || echo missing)"
[[ -f "$root/var/lib/systemd/deb-systemd-helper-enabled/livestream.service.dsh-also" ]] ||
  fail "deb-systemd-helper did not record the enablement"

step "the binary runs here"
in_root livestream --version
in_root livestream --help >/dev/null || fail "livestream --help"
in_root livestream backends >"$cache/backends.log" 2>&1 || fail "livestream backends: $(cat "$cache/backends.log")"
sed 's/^/  /' "$cache/backends.log"

step "the unit's ExecStart as an unprivileged user, keys in the state directory"
exec_start="$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/livestream.service")"
[[ "$exec_start" == "/usr/bin/livestream --config /etc/livestream/livestream.toml serve" ]] ||
  fail "unexpected ExecStart: $exec_start"
grep -q '^StateDirectory=livestream$' "$root/lib/systemd/system/livestream.service" || fail "no StateDirectory=livestream"
# What the service sees with DynamicUser + StateDirectory: a directory under
# /var/lib/private, reached through /var/lib/livestream, owned by the
# service's user (a uid in systemd's dynamic range), mode StateDirectoryMode.
# /var/lib/private is 0700 outside the service and traversable inside it (its
# mount namespace), as here.
uid=61234
install -d -m 0755 "$root/var/lib/private"
install -d -m 0700 -o "$uid" -g "$uid" "$root/var/lib/private/livestream"
ln -s private/livestream "$root/var/lib/livestream"
# Port 0 and loopback: no clash with anything on this machine, no mDNS.
# shellcheck disable=SC2086
chroot --userspec="$uid:$uid" "$root" env -i PATH=/usr/bin:/bin HOME=/nonexistent \
  $exec_start --duration 3 --set serve.listen=127.0.0.1:0 >"$cache/serve.log" 2>&1 ||
  fail "serve: $(cat "$cache/serve.log")"
grep -q '^pairing code: ' "$cache/serve.log" || fail "serve printed no pairing code: $(cat "$cache/serve.log")"
sed 's/^/  /' "$cache/serve.log"
expect_file /var/lib/private/livestream/server.key 600 "$uid:$uid"

step "systemd-analyze verify"
# A root for systemd-analyze: the unit and /usr/bin/livestream as installed in
# the chroot, beside the standard units (sysinit.target, network-online.target
# ...) of this machine's systemd, which minbase does not have.
analyze="$root/tmp/analyze-root"
install -d "$analyze/usr/bin" "$analyze/lib/systemd/system"
cp -a /lib/systemd/system/. "$analyze/lib/systemd/system/"
cp -a "$root/lib/systemd/system/livestream.service" "$analyze/lib/systemd/system/"
cp -a "$root/usr/bin/livestream" "$analyze/usr/bin/"
systemd-analyze verify --root="$analyze" /lib/systemd/system/livestream.service >"$cache/analyze-verify.log" 2>&1 ||
  fail "systemd-analyze verify: $(cat "$cache/analyze-verify.log")"
# verify exits 0 on some warnings too: none are expected.
[[ ! -s "$cache/analyze-verify.log" ]] || fail "systemd-analyze verify warned: $(cat "$cache/analyze-verify.log")"
echo "  no warnings"

step "systemd-analyze security"
systemd-analyze security --offline=yes --root="$analyze" livestream.service >"$cache/analyze-security.log" 2>&1 || true
grep -- '^✗' "$cache/analyze-security.log" | sed 's/^/  /'
tail -n 1 "$cache/analyze-security.log" | sed 's/^/  /'
rm -rf "$analyze"

step "upgrade (dpkg -i again) keeps a changed conffile and the enablement"
echo '# changed by the administrator' >>"$root/etc/livestream/livestream.toml"
in_root dpkg -i --force-confold /tmp/livestream.deb >>"$cache/dpkg-install.log" 2>&1 ||
  fail "dpkg -i (again): $(cat "$cache/dpkg-install.log")"
grep -q '^# changed by the administrator$' "$root/etc/livestream/livestream.toml" || fail "the changed conffile was replaced"
[[ -L "$link" ]] || fail "no longer enabled after an upgrade"

step "remove keeps the conffile and the keys"
in_root dpkg -r livestream >"$cache/dpkg-remove.log" 2>&1 || fail "dpkg -r: $(cat "$cache/dpkg-remove.log")"
[[ ! -e "$root/usr/bin/livestream" ]] || fail "/usr/bin/livestream is still there"
[[ -f "$root/etc/livestream/livestream.toml" ]] || fail "remove deleted the conffile"
[[ -f "$root/var/lib/private/livestream/server.key" ]] || fail "remove deleted the key"
# deb-systemd-helper's mask (a link to /dev/null) keeps a reinstall from
# undoing an administrator's disable; purge takes it away.
[[ "$(readlink "$root/etc/systemd/system/livestream.service")" == /dev/null ]] ||
  fail "remove did not mask the unit"

step "purge removes the conffile, the enablement and the state"
in_root dpkg -P livestream >"$cache/dpkg-purge.log" 2>&1 || fail "dpkg -P: $(cat "$cache/dpkg-purge.log")"
for gone in /etc/livestream /var/lib/livestream /var/lib/private/livestream \
  /etc/systemd/system/multi-user.target.wants/livestream.service \
  /etc/systemd/system/livestream.service \
  /var/lib/systemd/deb-systemd-helper-enabled/livestream.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-masked/livestream.service; do
  [[ ! -e "$root$gone" && ! -L "$root$gone" ]] || fail "$gone is still there after purge"
done
[[ -z "$(in_root dpkg-query -W -f='${db:Status-Abbrev}' livestream 2>/dev/null)" ]] ||
  fail "dpkg still knows livestream after purge"

step "passed"
