#!/usr/bin/env bash
# run-vivid-vm.sh - boot a Debian kernel under QEMU with the `vivid` V4L2 test
# driver loaded, run a program inside the guest against /dev/video0, power off.
#
# livestream's copy of the recipe in ../shared/tools/vivid-vm (the demo program
# left out); tests/integration/vivid.rs drives it. Facts about the VM (speeds,
# vivid's modes) are in that recipe's README.
#
# Usage:
#   run-vivid-vm.sh [OPTIONS] PROGRAM [ARGS...]    # copy host PROGRAM (+ its shared libs)
#                                                  # into the guest and run it there
#   run-vivid-vm.sh [OPTIONS] --sh 'SHELL CMD'     # run a busybox-sh command line
# Options:
#   --put FILE[:GUESTPATH]  copy a host file (+ shared libs if dynamic ELF) into the
#                           initramfs (default guest path /bin/NAME); repeatable
#   --share DIR             9p-mount host DIR read-write at /mnt/host in the guest
#   --fwd HPORT:GPORT       forward 127.0.0.1:HPORT on the host to guest tcp GPORT
#                           (qemu user net, restrict=on: guest cannot reach out); repeatable
#   --fwd-udp HPORT:GPORT   the same for udp; repeatable. qemu drops the guest's
#                           answers unless --restrict off
#   --restrict on|off       on (default): the guest reaches nothing outside it but
#                           its forwarded ports; off: it may answer UDP (this
#                           machine has no network beyond its registries anyway)
#   --host-cmd 'CMD'        run CMD on the host once the guest prints VIVID_VM_READY
#                           (the guest program prints that itself when it is listening);
#                           the script fails if CMD fails (also bounded by --timeout)
#   --vivid 'PARAMS'        vivid module parameters, e.g. 'n_devs=1 node_types=0x1'
#   --module PATH.ko[=PARAMS]  insmod an extra (out-of-tree) module, with PARAMS
#                           (e.g. 'multiplanar=1'), after the stock ones; repeatable,
#                           loaded in the order given. The in-tree modules it needs
#                           (`modinfo -F depends`) are loaded first; a dependency
#                           that is itself a --module must be given before it.
#                           tests/vivid/modules.sh builds vicodec and v4l2loopback.
#   --kvm auto|on|off       use /dev/kvm (default auto = if usable)
#   --smp N  --mem MiB      guest CPUs (default 2) and memory (default 1024)
#   --timeout SEC           kill qemu after SEC seconds (default 300)
# Environment:
#   VIVID_VM_CACHE   where the kernel .deb is downloaded/extracted (default ./.vivid-vm-cache)
#   KERNEL_PKG       Debian kernel package (default: what linux-image-amd64 depends on)
#   VIVID_VM_SETUP=0 skip the apt-get install of host tools
# Exit status: the guest program's exit status (printed by the guest as VIVID_VM_EXIT=N),
# 124 on timeout, 125 if the guest never reported one.
set -euo pipefail

cache=${VIVID_VM_CACHE:-./.vivid-vm-cache}
puts=() fwds=() udp_fwds=() extra_mods=() share="" host_cmd="" vivid_params="" kvm=auto smp=2 mem=1024 timeout_s=300 restrict=on
sh_cmd="" prog=() 
while [[ $# -gt 0 ]]; do
  case $1 in
    --put) puts+=("$2"); shift 2 ;;
    --share) share=$2; shift 2 ;;
    --fwd) fwds+=("$2"); shift 2 ;;
    --fwd-udp) udp_fwds+=("$2"); shift 2 ;;
    --restrict) restrict=$2; shift 2 ;;
    --host-cmd) host_cmd=$2; shift 2 ;;
    --vivid) vivid_params=$2; shift 2 ;;
    --module) extra_mods+=("$2"); shift 2 ;;
    --kvm) kvm=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --sh) sh_cmd=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/{sub(/^# ?/,"");print;next} NR>1{exit}' "$0"; exit 0 ;;
    --) shift; prog=("$@"); break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) prog=("$@"); break ;;
  esac
done
log() { printf '[vivid-vm %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- 1. host tools (Debian bookworm package names) ---------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx insmod || need_pkgs+=(busybox-static)
command -v depmod >/dev/null || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v v4l2-ctl >/dev/null || need_pkgs+=(v4l-utils)
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v file >/dev/null || need_pkgs+=(file)
if [[ ${#need_pkgs[@]} -gt 0 && ${VIVID_VM_SETUP:-1} != 0 ]]; then
  log "installing ${need_pkgs[*]}"
  [[ -n $(find /var/lib/apt/lists -name '*Packages*' -mmin -1440 2>/dev/null | head -1) ]] \
    || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
file /bin/busybox 2>/dev/null | grep -q 'statically linked' || { echo "/bin/busybox is not static; apt-get install busybox-static" >&2; exit 2; }

# modules in dependency order (depth-first over modules.dep)
guest_mods=(vivid virtio_pci virtio_net 9pnet_virtio 9p)
# --module: PATH and PARAMS, and the in-tree modules each needs
extra_names=" " extra_paths=() extra_params=() extra_deps=()
for e in "${extra_mods[@]}"; do
  path=${e%%=*}; params=""; [[ $e == *=* ]] && params=${e#*=}
  [[ -f $path ]] || { echo "--module $path: no such file" >&2; exit 2; }
  for d in $(modinfo -F depends "$path" | tr , ' '); do
    [[ $extra_names == *" ${d//-/_} "* ]] || extra_deps+=("$d")
  done
  name=$(basename "$path" .ko); extra_names+="${name//-/_} "
  extra_paths+=("$path") extra_params+=("$params")
done
declare -A seen=(); order=()
resolve() {
  local m=$1 d
  [[ -n ${seen[$m]:-} ]] && return; seen[$m]=1
  local line; line=$(grep -m1 "^$m:" "$moddir/modules.dep") || { echo "module $m not in modules.dep" >&2; exit 3; }
  for d in ${line#*:}; do resolve "$d"; done
  order+=("$m")
}
# a module by name: - and _ are the same in module names
find_mod() { grep -m1 -E "/${1//[-_]/[-_]}\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | cut -d: -f1; }
resolve_all() {
  seen=(); order=()
  for name in "${guest_mods[@]}"; do       # not found: built in
    m=$(find_mod "$name" || true); [[ -z $m ]] || resolve "$m"
  done
  for name in "${extra_deps[@]}"; do
    m=$(find_mod "$name" || true)
    if [[ -n $m ]]; then resolve "$m"
    elif ! grep -qE "/${name//[-_]/[-_]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
      echo "a --module needs $name, which $KERNEL_PKG has neither as a module nor built in" \
        "(give it as a --module before the one that needs it)" >&2; exit 3
    fi
  done
  return 0
}

# ---- 2. kernel package (downloaded, extracted, never installed) ---------------------
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if [[ -z ${KERNEL_PKG:-} ]]; then
  KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $KERNEL_PKG ]] || { apt-get update -qq; KERNEL_PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
fi
kdir=$cache/$KERNEL_PKG
# a cache pruned for fewer modules than this run needs is fetched again
if [[ -f $kdir/.done ]]; then
  moddir=$kdir/root/lib/modules/$(ls "$kdir/root/lib/modules"); resolve_all
  for m in "${order[@]}"; do [[ -f $moddir/$m ]] || { log "cache lacks $m: fetching again"; rm "$kdir/.done"; break; }; done
fi
if [[ ! -f $kdir/.done ]]; then
  log "downloading $KERNEL_PKG"
  rm -rf "$kdir"; mkdir -p "$kdir"
  (cd "$kdir" && apt-get download "$KERNEL_PKG" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  deb=$(ls "$kdir"/*.deb)
  dpkg -x "$deb" "$kdir/root"
  kver=$(ls "$kdir/root/lib/modules")
  depmod -b "$kdir/root" "$kver"      # modules.dep is not shipped in the .deb
  # prune the ~400 MB tree to the kernel image and the modules the guest needs (~10 MB)
  moddir=$kdir/root/lib/modules/$kver; resolve_all
  (cd "$moddir" && find kernel -name '*.ko*' | grep -vxF -f <(printf '%s\n' "${order[@]}") | xargs rm -f)
  rm -rf "$kdir/root/usr" "$deb"; touch "$kdir/.done"
fi
kver=$(ls "$kdir/root/lib/modules")
vmlinuz=$kdir/root/boot/vmlinuz-$kver
moddir=$kdir/root/lib/modules/$kver

# ---- 3. initramfs ------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/vivid-vm.XXXXXX")
qpid=""
cleanup() { [[ -n $qpid ]] && kill "$qpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
ird=$work/root
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,tmp,mnt/host,lib/modules,etc}
cp /bin/busybox "$ird/bin/busybox"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -sf busybox "$ird/bin/$a"; done

resolve_all
: >"$ird/modules.order"
for m in "${order[@]}"; do
  b=$(basename "$m"); out=$ird/lib/modules/${b%%.ko*}.ko
  case $m in
    *.ko.xz) xz -dc "$moddir/$m" >"$out" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" >"$out" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$out" ;;
    *) cp "$moddir/$m" "$out" ;;
  esac
  echo "${b%%.ko*}" >>"$ird/modules.order"
done
: >"$ird/extra.sh"
for i in "${!extra_paths[@]}"; do
  b=$(basename "${extra_paths[$i]}")
  cp "${extra_paths[$i]}" "$ird/lib/modules/extra-$b"
  printf 'insmod /lib/modules/extra-%s %s || echo "VIVID_VM: insmod %s failed"\n' \
    "$b" "${extra_params[$i]}" "$b" >>"$ird/extra.sh"
done

# copy a host file and, for a dynamic ELF, its shared libraries + loader
put_file() {
  local src=$1 dst=$2 lib
  mkdir -p "$ird$(dirname "$dst")"; cp -L "$src" "$ird$dst"; chmod +x "$ird$dst" 2>/dev/null || true
  # the guest holds its initramfs in RAM: a debug build's debug info (300 MB
  # for a test binary) does not fit beside another in 1 GiB
  if file -L "$src" | grep -q 'with debug_info'; then strip --strip-debug "$ird$dst"; fi
  if file -L "$src" | grep -q 'dynamically linked'; then
    for lib in $(ldd "$src" | grep -oE '/[^ ]+'); do
      [[ -e $ird$lib ]] && continue
      mkdir -p "$ird$(dirname "$lib")"; cp -L "$lib" "$ird$lib"
    done
  fi
}
command -v v4l2-ctl >/dev/null && put_file "$(command -v v4l2-ctl)" /usr/bin/v4l2-ctl
for p in "${puts[@]}"; do
  src=${p%%:*}; dst=${p#*:}; [[ $dst == "$p" ]] && dst=/bin/$(basename "$src")
  put_file "$src" "$dst"
done

# the command the guest runs
if [[ ${#prog[@]} -gt 0 ]]; then
  put_file "${prog[0]}" "/bin/$(basename "${prog[0]}")"
  cmd="/bin/$(basename "${prog[0]}")"; for a in "${prog[@]:1}"; do cmd+=" '${a//\'/\'\\\'\'}'"; done
elif [[ -n $sh_cmd ]]; then
  cmd=$sh_cmd
else
  echo "nothing to run: give PROGRAM [ARGS] or --sh 'CMD'" >&2; exit 2
fi
printf '%s\n' "$cmd" >"$ird/cmd.sh"

cat >"$ird/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in \$(cat /modules.order); do
  p=""; [ "\$m" = vivid ] && p="$vivid_params"
  insmod /lib/modules/\$m.ko \$p || echo "VIVID_VM: insmod \$m failed"
done
. /extra.sh
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
fi
grep -q host /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null && \
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host /mnt/host
i=0; while [ ! -e /dev/video0 ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
echo "VIVID_VM: modules loaded at uptime \$(cut -d' ' -f1 /proc/uptime)s"
cd /tmp
sh /cmd.sh; rc=\$?
echo "VIVID_VM_EXIT=\$rc at uptime \$(cut -d' ' -f1 /proc/uptime)s"
sync; umount /mnt/host 2>/dev/null
poweroff -f
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")
log "initramfs $(du -h "$work/initrd.gz" | cut -f1) (${#order[@]} modules + ${#extra_paths[@]} extra), kernel $kver"

# ---- 4. boot ------------------------------------------------------------------------
accel=(-accel tcg -cpu max)
kvm_usable() {
  # /dev/kvm alone is not enough: inside a VM without nested virtualisation (no vmx/svm
  # flag in /proc/cpuinfo) /dev/kvm may exist and open, but a guest never gets past the
  # real-mode kernel setup.  qemu exits at once if KVM cannot be initialised at all.
  [[ -r /dev/kvm && -w /dev/kvm ]] || return 1
  grep -qwE 'vmx|svm' /proc/cpuinfo || return 1
  timeout 2 qemu-system-x86_64 -accel kvm -M none -display none -nodefaults -monitor none -S \
    </dev/null >/dev/null 2>&1; [[ $? -eq 124 ]]
}
if [[ $kvm == on && -r /dev/kvm && -w /dev/kvm ]] || { [[ $kvm == auto ]] && kvm_usable; }; then
  accel=(-accel kvm -cpu host)
elif [[ $kvm == on ]]; then echo "--kvm on but /dev/kvm is not usable" >&2; exit 2; fi
hostfwd=""; for f in "${fwds[@]}"; do hostfwd+=",hostfwd=tcp:127.0.0.1:${f%%:*}-:${f#*:}"; done
for f in "${udp_fwds[@]}"; do hostfwd+=",hostfwd=udp:127.0.0.1:${f%%:*}-:${f#*:}"; done
qargs=(-nodefaults -display none -no-reboot -monitor none -serial stdio
  "${accel[@]}" -smp "$smp" -m "$mem"
  -kernel "$vmlinuz" -initrd "$work/initrd.gz"
  -append "console=ttyS0 quiet panic=-1 loglevel=4"
  -netdev "user,id=n0,restrict=$restrict$hostfwd" -device virtio-net-pci,netdev=n0)
[[ -n $share ]] && qargs+=(-virtfs "local,path=$share,mount_tag=host,security_model=none,id=host")
log "booting (${accel[1]}, smp $smp, ${mem}M)"
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
: >"$work/console.log"
timeout "$timeout_s" qemu-system-x86_64 "${qargs[@]}" </dev/null >"$work/console.log" 2>&1 & qpid=$!
host_rc=0; tail_pid=""
tail -n +1 -f "$work/console.log" --pid "$qpid" >&2 & tail_pid=$!
if [[ -n $host_cmd ]]; then
  while kill -0 "$qpid" 2>/dev/null && ! grep -q VIVID_VM_READY "$work/console.log"; do sleep 0.2; done
  if kill -0 "$qpid" 2>/dev/null; then
    log "guest READY after $(elapsed)s; running host command"
    timeout "$timeout_s" bash -c "$host_cmd" || host_rc=$?
    log "host command exit $host_rc"
  fi
fi
wait "$qpid" && qrc=0 || qrc=$?; qpid=""
wait "$tail_pid" 2>/dev/null || true
log "qemu exit $qrc, wall $(elapsed)s (boot to poweroff)"
[[ $qrc -eq 124 ]] && { log "TIMEOUT after ${timeout_s}s"; exit 124; }
rc=$(grep -ao "VIVID_VM_EXIT=[0-9]*" "$work/console.log" | tail -1 | cut -d= -f2 || true)
[[ -n $rc ]] || { log "guest did not report an exit status"; exit 125; }
[[ $host_rc -ne 0 ]] && exit "$host_rc"
exit "$rc"
