#!/bin/sh
# guest.sh: runs inside the vivid VM (busybox sh) and does what the host test asks.
#
# The host (tests/integration/vivid.rs) and this script share a folder, $1
# (9p-mounted). The host writes request N as the file req.N; this script runs it
# and answers with files named after N:
#   serve ARGS...  start `livestream serve ARGS` in the background; answer
#                  ready.N once it listens (or fail.N with its log if it ends first)
#   stop           end that server (SIGTERM); answer rc.N with its exit status
#   sh CMD         run CMD; answer out.N (stdout+stderr) and rc.N
#   quit           leave
# Every wait has a deadline, so a lost host never keeps the VM up (the VM
# script's --timeout is the outer bound).
H=$1
L=/bin/livestream
i=0
pid=""
log=""

wait_for() { # FILE SECONDS
  n=0
  while [ ! -e "$1" ]; do
    n=$((n + 1)); [ $n -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
}

answer() { # NAME CONTENT: written whole, then renamed, so the host never reads half
  printf '%s\n' "$2" > "$H/.$1.tmp" && mv "$H/.$1.tmp" "$H/$1"
}

echo "VIVID_VM_READY"
while wait_for "$H/req.$i" 600; do
  req=$(cat "$H/req.$i")
  case $req in
    "serve "*)
      log=$H/serve.$i.log
      # shellcheck disable=SC2086 # the host's words, split as it wrote them
      $L ${req#serve } > "$log" 2>&1 &
      pid=$!
      n=0
      while ! grep -q "listening on" "$log"; do
        if ! kill -0 $pid 2>/dev/null; then answer "fail.$i" "$(cat "$log")"; pid=""; break; fi
        n=$((n + 1)); [ $n -gt 1200 ] && { answer "fail.$i" "no 'listening on' in 120 s"; break; }
        sleep 0.1
      done
      [ -n "$pid" ] && answer "ready.$i" "$pid"
      ;;
    stop)
      rc=none
      if [ -n "$pid" ]; then kill -TERM $pid; wait $pid; rc=$?; pid=""; fi
      answer "rc.$i" "$rc"
      ;;
    "sh "*)
      out=$(sh -c "${req#sh }" 2>&1); rc=$?
      answer "out.$i" "$out"
      answer "rc.$i" "$rc"
      ;;
    quit) break ;;
    *) answer "rc.$i" "unknown request: $req" ;;
  esac
  i=$((i + 1))
done
[ -n "$pid" ] && kill -TERM $pid
exit 0
