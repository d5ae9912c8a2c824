"""Side-by-side measurement for the benchmark scripts: wall time and peak memory of whole commands.

Each benchmark script measures our command and the tool a user would otherwise pick in the same run, on
the same generated reference media, and prints one JSON line per comparison:
{"bench": ..., "case": ..., "ours_s": ..., "theirs_s": ..., "ratio": theirs/ours (>1 = we are faster),
 "ours_peak_mb": ..., "theirs_peak_mb": ..., "detail": ...}
tests/bench/run collects those lines into docs/performance.md.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("MW_BIN", os.path.join(ROOT, "build", "mediaworker"))
WORK = os.environ.get("MW_BENCH_WORKDIR", os.path.join(ROOT, "build", "bench"))


def measure(cmd, env=None, cwd=None):
    """Runs cmd once; returns (wall seconds, peak RSS in MB). Fails loudly if the command fails."""
    full_env = dict(os.environ)
    full_env.setdefault("MW_LOG_LEVEL", "error")
    if env:
        full_env.update(env)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:6]} failed ({proc.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def measure_each(cmds, env=None):
    """Runs commands one after another; returns (total wall seconds, largest peak RSS in MB)."""
    total, peak = 0.0, 0.0
    for cmd in cmds:
        wall, rss = measure(cmd, env=env)
        total += wall
        peak = max(peak, rss)
    return total, peak


def alternate(sides, rounds=3):
    """sides: [(name, measure function returning (seconds, MB))]. Runs every side once per round, in turn;
    returns {name: (median seconds, largest MB, [seconds per round])}. This machine's speed drifts by several
    per cent over minutes, more than the differences some rows measure: one run per side can land on either
    side of them, while alternating runs see the same drift and their medians compare like with like."""
    times = {name: [] for name, _ in sides}
    peaks = {name: 0.0 for name, _ in sides}
    for _ in range(rounds):
        for name, run in sides:
            wall, rss = run()
            times[name].append(wall)
            peaks[name] = max(peaks[name], rss)
    return {name: (statistics.median(times[name]), peaks[name], times[name]) for name in times}


def round_ratios(theirs, ours):
    """'a, b, c': the other side's time over ours in each round of alternate()."""
    return ", ".join(f"{t / o:.3f}" for t, o in zip(theirs, ours))


def _rounded(value, digits):
    return None if value is None else round(value, digits)


def report(bench, case, ours_s, theirs_s, ours_peak_mb, theirs_peak_mb, detail="", target=None, internal=False):
    """None marks what a row does not measure (shown as n/a). internal: both sides are ours (one mode of
    mediaworker against another), so the chart does not draw it as a comparison with another tool."""
    row = {"bench": bench, "case": case, "ours_s": _rounded(ours_s, 4), "theirs_s": _rounded(theirs_s, 4),
           "ratio": round(theirs_s / ours_s, 3) if ours_s and theirs_s is not None else None,
           "ours_peak_mb": _rounded(ours_peak_mb, 1), "theirs_peak_mb": _rounded(theirs_peak_mb, 1),
           "detail": detail, "target": target, "internal": internal}
    print(json.dumps(row), flush=True)
    return row


def ffmpeg(args):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"] + list(args), check=True)


def reference_clip():
    """The reference clip of the issues: 60 s 1080p30 H.264 High + AAC, keyframe every 2 s."""
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "reference-1080p30-60s.mp4")
    if not os.path.exists(path):
        tmp = path + ".part.mp4"
        ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=60",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
                "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
                "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
                "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", tmp])
        os.replace(tmp, path)
    return path


# Uploads as people make them: real containers of 5-60 s and 1-20 MB, camera-like pictures (a moving pattern
# under temporal grain, so the encoders spend real bits), several codecs and muxers, a phone's rotation, a
# file whose index sits at its end. (name, duration s, size, rate, video codec args, audio codec args, extra)
UPLOADS = [
    ("phone-1080p30-h264-aac.mov", 20, "1920x1080", 30, ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "5M"],
     ["-c:a", "aac", "-b:a", "128k"], ["-metadata:s:v", "rotate=90"]),
    ("web-720p30-h264-aac.mp4", 30, "1280x720", 30, ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k"],
     ["-c:a", "aac", "-b:a", "128k"], ["-movflags", "+faststart"]),
    ("camera-1080p60-h264-aac-moov-at-end.mp4", 10, "1920x1080", 60,
     ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M"], ["-c:a", "aac", "-b:a", "192k"], []),
    ("hevc-1080p30-aac.mp4", 10, "1920x1080", 30, ["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "3M",
                                                   "-tag:v", "hvc1", "-x265-params", "log-level=error"],
     ["-c:a", "aac", "-b:a", "128k"], []),
    ("vp9-720p30-opus.webm", 15, "1280x720", 30, ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                                                  "-b:v", "1500k"], ["-c:a", "libopus", "-b:a", "96k"], []),
    ("broadcast-720p25-h264-aac.ts", 60, "1280x720", 25, ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "2M"],
     ["-c:a", "aac", "-b:a", "128k"], []),
    ("edit-1080p25-h264-aac.mkv", 20, "1920x1080", 25, ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M"],
     ["-c:a", "aac", "-b:a", "160k"], []),
    ("screen-480p30-mpeg4-mp3.avi", 30, "854x480", 30, ["-c:v", "mpeg4", "-q:v", "4"],
     ["-c:a", "libmp3lame", "-b:a", "128k"], []),
]


def upload_corpus():
    """The UPLOADS files (made once, kept under WORK/uploads); returns their paths."""
    folder = os.path.join(WORK, "uploads")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, seconds, size, rate, video, audio, extra in UPLOADS:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            tmp = os.path.join(folder, ".part-" + name)
            ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds},"
                                         "noise=alls=10:allf=t+u",
                    "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
                    "-pix_fmt", "yuv420p", "-g", str(rate * 2)] + video + audio + extra + [tmp])
            os.replace(tmp, path)
        paths.append(path)
    return paths


def fresh(name):
    """An empty folder WORK/name for one benchmark's outputs."""
    folder = os.path.join(WORK, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def copies(path, count, name, prefix=""):
    """count hard links of path under distinct names, so per-file tools cannot hit a cache by name."""
    folder = os.path.join(WORK, name)
    os.makedirs(folder, exist_ok=True)
    out = []
    for i in range(count):
        link = os.path.join(folder, f"{prefix}{i:03d}{os.path.splitext(path)[1]}")
        if not os.path.exists(link):
            os.link(path, link)
        out.append(link)
    return out


def log(message):
    print(message, file=sys.stderr, flush=True)
