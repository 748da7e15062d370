#!/usr/bin/env bash
# H.264 side by side: livestream's h264 codec (openh264) and ffmpeg's libx264
# (-preset ultrafast -tune zerolatency, the low-latency settings of the peers'
# pipelines) on the same frames, at the bitrate our encoder reached, so the
# Y-PSNR of the two is comparable. Prints one Markdown table.
#
#   scripts/bench-h264.sh [SIZES] [FRAMES]      (default 1280x720,1920x1080 and 150)
#
# Needs a release build (cargo build --release) and ffmpeg with libx264
# (Debian's ffmpeg has it). x264 runs with one thread (-threads 1), as
# openh264 does at these sizes, so CPU per frame compares one core with one.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-1280x720,1920x1080}
frames=${2:-150}
bin=target/release/livestream
[[ -x $bin ]] || cargo build --release
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ours=$("$bin" bench --encode --codecs h264 --content photo,test-pattern \
  --sizes "$sizes" --frames "$frames" --y4m "$work")
echo "$ours"
echo
echo "| encoder | content | size | Mbit/s at 30 fps | bits/pixel | Y-PSNR dB | encode CPU ms/frame |"
echo "|---|---|---|---:|---:|---:|---:|"
# Each of our rows: | h264 | content | WxH | frames | Mbit/s | bpp | psnr | enc ms | ...
echo "$ours" | grep '^| h264 ' | while IFS='|' read -r _ codec content size n mbit bpp psnr enc _; do
  content=$(echo $content); size=$(echo $size); mbit=$(echo $mbit)
  echo "| openh264 (livestream) | $content | $size | $mbit | $(echo $bpp) | $(echo $psnr) | $(echo $enc) |"
  y4m="$work/$content-$size.y4m"
  kbps=$(awk -v m="$mbit" 'BEGIN { printf "%d", m * 1000 }')
  # -benchmark prints the process's user time; per frame over $frames frames.
  log=$(ffmpeg -hide_banner -nostdin -benchmark -f yuv4mpegpipe -i "$y4m" \
    -c:v libx264 -preset ultrafast -tune zerolatency -threads 1 \
    -b:v "${kbps}k" -maxrate "${kbps}k" -bufsize "${kbps}k" -g 60 \
    -f matroska -y "$work/x264.mkv" 2>&1)
  utime=$(echo "$log" | sed -n 's/.*utime=\([0-9.]*\)s.*/\1/p' | tail -1)
  # The stream's own bytes, without the container's.
  bytes=$(ffprobe -v error -select_streams v:0 -show_entries packet=size -of csv=p=0 \
    "$work/x264.mkv" | awk '{ s += $1 } END { print s }')
  # Frame by frame (both renumbered), luma only: no range or format conversion.
  psnr=$(ffmpeg -hide_banner -nostdin -i "$work/x264.mkv" -f yuv4mpegpipe -i "$y4m" \
    -lavfi "[0:v]settb=1/30,setpts=N,extractplanes=y[a];[1:v]settb=1/30,setpts=N,extractplanes=y[b];[a][b]psnr" \
    -f null - 2>&1 | sed -n 's/.* average:\([0-9.inf]*\) .*/\1/p' | tail -1)
  w=${size%x*}; h=${size#*x}
  awk -v b="$bytes" -v n="$frames" -v w="$w" -v h="$h" -v u="$utime" -v p="$psnr" \
    -v c="$content" -v s="$size" 'BEGIN {
      printf "| x264 ultrafast zerolatency | %s | %s | %.2f | %.3f | %s | %.2f |\n",
        c, s, b * 8 / n * 30 / 1e6, b * 8 / n / (w * h), p, u * 1000 / n }'
done
