#!/usr/bin/env bash
# Prepares gpu-bundle/: the mediaworker binary, every shared library it loads (with the dynamic loader, so
# it runs on a machine with only the NVIDIA driver and no Debian libav), and the reference clip, plus
# tests/gpu/check.sh to run there. usage (here): tests/gpu/bundle.sh; then on the GPU machine, from the
# repository root: bash tests/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build >/dev/null
bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/lib"
cp build/mediaworker "$bundle/"
# The whole dependency closure, the loader included: the GPU machine's own libraries are not Debian 12's.
ldd build/mediaworker | awk '/=> \// {print $3} /^\s*\/.*ld-linux/ {print $1}' | sort -u |
  while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
strip --strip-unneeded "$bundle"/lib/*.so* 2>/dev/null || true
# 20 s of the issues' reference clip (1080p30 H.264, keyframe every 2 s): long enough to time, small to carry.
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=20 \
  -c:v libx264 -preset veryfast -crf 28 -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  "$bundle/reference-1080p30.mp4"
du -sh "$bundle"
echo "carry '$bundle' (it must fit the device tool's 64 MiB working-tree limit) and run: bash tests/gpu/check.sh"
