#!/usr/bin/env bash
# Runs on a machine with an NVIDIA GPU and its driver, from the repository root, with gpu-bundle/ beside
# it (tests/gpu/bundle.sh made it). Prints what the binary can use there, then times software against
# NVDEC for the same work: a full decode of the reference clip, and thumbnails of ten copies of it.
# Data-centre GPUs (H100/H200) have NVDEC but no NVENC, so `caps` must show h264_nvenc unavailable and
# encoding must fall back to software cleanly. Finishes in a few minutes.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
runtime=/tmp/mediaworker-runtime
work=/tmp/mediaworker-gpu-work
# Only the small results go to $OUT (the device tool brings back a few files); inputs and images stay here.
mkdir -p "$out" "$work/thumbs-sw" "$work/thumbs-cuda" "$runtime"
# python3 is on every machine this runs on; xz and tar may not be.
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' gpu-bundle/runtime.tar.xz "$runtime"
mw() { "$runtime"/lib/ld-linux-x86-64.so.2 --library-path "$runtime/lib" "$runtime/mediaworker" "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "nvidia-smi not available"
echo "== caps"
mw caps --log-format text | tee "$out/caps.json"
clip=$PWD/gpu-bundle/reference-1080p30.mp4
copies=()
for i in $(seq 1 10); do ln -f "$clip" "$work/copy$i.mp4"; copies+=("$work/copy$i.mp4"); done
echo "== decode: software, then cuda"
mw decode "$clip" --hwaccel none | tee "$out/decode-sw.json"
mw decode "$clip" --hwaccel cuda | tee "$out/decode-cuda.json"
echo "== thumbnails (exact, 50%) of 10 copies: software, then cuda"
seconds() { python3 -c 'import sys, time; print(time.time() - float(sys.argv[1]))' "$1"; }
start=$(date +%s.%N); mw thumbnail "${copies[@]}" -o "$work/thumbs-sw/" --select exact --hwaccel none >/dev/null
sw=$(seconds "$start")
start=$(date +%s.%N); mw thumbnail "${copies[@]}" -o "$work/thumbs-cuda/" --select exact --hwaccel cuda >/dev/null
hw=$(seconds "$start")
python3 - "$out" "$sw" "$hw" <<'PY'
import json, sys
out, sw, hw = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d_sw = json.load(open(f"{out}/decode-sw.json")); d_hw = json.load(open(f"{out}/decode-cuda.json"))
print(f"decode: software {d_sw['fps']:.0f} fps, {d_hw['acceleration']['decode']} {d_hw['fps']:.0f} fps, "
      f"speed-up {d_hw['fps'] / d_sw['fps']:.2f}x (frames {d_sw['frames']} / {d_hw['frames']})")
print(f"thumbnails: software {sw:.2f} s, cuda {hw:.2f} s, speed-up {sw / hw:.2f}x")
print("fallback recorded:", d_hw["acceleration"]["fallback"])
PY
