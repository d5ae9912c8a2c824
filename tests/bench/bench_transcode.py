"""Transcode speed and memory against the ffmpeg CLI with the same encoder settings, side by side in one run.

Rows (benchlib.report):
- one-rendition: 1080p30 reference -> 720p, libx264 veryfast CRF 23 + caps, AAC 128k, faststart.
- three-renditions vs three separate ffmpeg commands, and vs one ffmpeg command with a split filter.
- remux fast path vs our own transcode of the same file (target: 20x), and vs `ffmpeg -c copy`.
The encoding rows run each side three times, alternating, and report medians (benchlib.alternate): their
targets are a few per cent apart, less than this machine's drift between two runs.
usage: python3 tests/bench/bench_transcode.py [--quick] (--quick: a 10 s clip instead of the 60 s reference)
"""
import os
import sys

import benchlib

# The web preset's row for these heights (src/media/ladder.c): maxrate/bufsize in kbit.
CAPS = {1080: (6000, 12000), 720: (3000, 6000), 480: (1500, 3000)}
WIDTHS = {1080: 1920, 720: 1280, 480: 852}


def x264_args(height):
    maxrate, bufsize = CAPS[height]
    return ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-crf", "23", "-pix_fmt", "yuv420p",
            "-maxrate", f"{maxrate}k", "-bufsize", f"{bufsize}k", "-g", "60", "-keyint_min", "60",
            "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*2)",
            "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]


AUDIO = ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]


def ffmpeg_one(src, height, out):
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", src,
            "-vf", f"scale={WIDTHS[height]}:{height}"] + x264_args(height) + AUDIO + ["-movflags", "+faststart", out]


def ffmpeg_split(src, heights, folder):
    graph = f"[0:v]split={len(heights)}" + "".join(f"[s{i}]" for i in range(len(heights)))
    graph += "".join(f";[s{i}]scale={WIDTHS[h]}:{h}[v{i}]" for i, h in enumerate(heights))
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", src, "-filter_complex", graph]
    for i, h in enumerate(heights):
        cmd += ["-map", f"[v{i}]", "-map", "0:a"] + x264_args(h) + AUDIO + [
            "-movflags", "+faststart", os.path.join(folder, f"split_{h}.mp4")]
    return cmd


def ours(src, folder, heights, *extra):
    return [benchlib.BIN, "transcode", src, "-o", folder, "--renditions", ",".join(map(str, heights))] + list(extra)



def main():
    src = benchlib.reference_clip()
    if "--quick" in sys.argv:
        quick = os.path.join(benchlib.WORK, "reference-10s.mp4")
        if not os.path.exists(quick):
            benchlib.ffmpeg(["-i", src, "-t", "10", "-c", "copy", "-movflags", "+faststart", quick])
        src = quick
    benchlib.log(f"input {src}")

    folder = benchlib.fresh("tc-one")
    one = benchlib.alternate([
        ("ffmpeg", lambda: benchlib.measure(ffmpeg_one(src, 720, os.path.join(folder, "ffmpeg_720.mp4")))),
        ("ours", lambda: benchlib.measure(ours(src, folder, [720], "--no-remux")))])
    benchlib.report("transcode", "one-rendition-720p", one["ours"][0], one["ffmpeg"][0], one["ours"][1],
                    one["ffmpeg"][1], detail="ffmpeg CLI, same x264/AAC settings; medians of 3 alternating runs, "
                    f"ratio per round {benchlib.round_ratios(one['ffmpeg'][2], one['ours'][2])}",
                    target="time ratio >= 1.05 (ours/theirs <= 0.95)")

    heights = [1080, 720, 480]
    folder = benchlib.fresh("tc-three")
    three = benchlib.alternate([
        ("ours", lambda: benchlib.measure(ours(src, folder, heights, "--no-remux"))),
        ("separate", lambda: benchlib.measure_each([ffmpeg_one(src, h, os.path.join(folder, f"ffmpeg_{h}.mp4"))
                                                    for h in heights])),
        ("split", lambda: benchlib.measure(ffmpeg_split(src, heights, folder)))])
    ours_s, ours_mb, ours_runs = three["ours"]
    for case, side, detail, target in [
            ("three-renditions-vs-3-commands", "separate", "three separate ffmpeg commands", "ratio >= 1.25"),
            ("three-renditions-vs-split", "split", "one ffmpeg command with a split filter",
             "ratio >= 1.0, less memory")]:
        theirs_s, theirs_mb, theirs_runs = three[side]
        benchlib.report("transcode", case, ours_s, theirs_s, ours_mb, theirs_mb,
                        detail=f"1080/720/480; {detail}; medians of 3 alternating runs, ratio per round "
                        f"{benchlib.round_ratios(theirs_runs, ours_runs)}", target=target)

    folder = benchlib.fresh("tc-remux")
    remux_s, remux_mb = benchlib.measure(ours(src, folder, [1080]))
    encode_s, encode_mb = benchlib.measure(ours(src, benchlib.fresh("tc-remux-encode"), [1080], "--no-remux"))
    benchlib.report("transcode", "remux-vs-our-transcode", remux_s, encode_s, remux_mb, encode_mb,
                    detail="web-compliant input at its own size", target="ratio >= 20", internal=True)
    copy_s, copy_mb = benchlib.measure(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", src, "-c", "copy",
                                        "-movflags", "+faststart", os.path.join(folder, "copy.mp4")])
    benchlib.report("transcode", "remux-vs-ffmpeg-copy", remux_s, copy_s, remux_mb, copy_mb,
                    detail="ours includes the output check (re-open, decode first and last GOP)")


if __name__ == "__main__":
    main()
