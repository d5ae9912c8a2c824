#!/usr/bin/env bash
# Prepares gpu-bundle/ for a machine with an NVIDIA GPU and only its driver (no Debian libav there):
#   gpu-bundle/runtime.tar.xz    the mediaworker binary and every shared library it loads, the dynamic
#                                loader included, so it runs whatever the machine's own libraries are;
#   gpu-bundle/reference-1080p30.mp4   20 s of the issues' reference clip.
# Libraries the check never calls into (encoders, text-to-speech voices, SVG, ICU data...) are replaced by
# stand-ins of the same soname and symbols (tests/gpu/stub_lib.py) to fit the device tool's 64 MiB limit.
# usage (here): tests/gpu/bundle.sh; then carry gpu-bundle and run, on the GPU machine: bash tests/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build >/dev/null
# libaom and libx265 stay: libavcodec asks their versions when it builds its codec list.
unused="libicudata libcodec2 librsvg-2 libplacebo liblapack libSvtAv1Enc libflite librav1e"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib"
cp build/mediaworker "$stage/"
ldd build/mediaworker | awk '/=> \// {print $3} /ld-linux/ && !/=>/ {print $1}' | sort -u |
  while read -r lib; do
    name=$(basename "$lib")
    stub=0
    for prefix in $unused; do case $name in "$prefix"*) stub=1 ;; esac; done
    if [ $stub -eq 1 ]; then
      python3 tests/gpu/stub_lib.py "$lib" "$stage/lib/$name"
    else
      cp -L "$lib" "$stage/lib/"
    fi
  done
strip --strip-unneeded "$stage"/lib/*.so* 2>/dev/null || true
rm -rf gpu-bundle
mkdir gpu-bundle
tar -C "$stage" -cf - . | xz -T0 -6 > gpu-bundle/runtime.tar.xz
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1920x1080:rate=30:duration=20 \
  -c:v libx264 -preset veryfast -crf 28 -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p \
  gpu-bundle/reference-1080p30.mp4
du -sh gpu-bundle/*
