"""Thumbnails and storyboards side by side with ffmpegthumbnailer and the ffmpeg CLI.

On the reference clip (60 s 1080p30 H.264, keyframe every 2 s), N hard-linked copies so no tool can
cache by name: a 320-wide JPEG at 50 % per file. Ours handles the N files in one process (that is the
point: no per-file start-up); the others run one process per file, as they are used. Then a storyboard
(one 160-wide tile every 2 s, 10 columns) against the ffmpeg fps+scale+tile pipeline, and peak memory of
one job. Prints one JSON row per comparison (benchlib.report).
"""
import os
import resource
import shutil
import sys

import benchlib

N = int(os.environ.get("MW_BENCH_COPIES", "20"))
STEADY_N = 5 * N


def cpu_of(fn, *args):
    """Runs fn(*args) (a benchlib measure) and returns its result plus the CPU seconds its children used:
    on a shared machine the CPU ratio says what wall time cannot."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = fn(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result + ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),)


def ours_thumbnail(files, select, out, at="50%"):
    return [benchlib.BIN, "thumbnail"] + files + ["-o", out + "/", "--width", "320", "--at", at, "--select", select,
                                                  "--format", "jpeg"]



def main():
    clip = benchlib.reference_clip()
    files = benchlib.copies(clip, N, "thumbnail-copies")
    have_thumbnailer = shutil.which("ffmpegthumbnailer") is not None
    out = benchlib.fresh("thumbnail-out")

    # Warm the page cache so the first tool measured is not penalised.
    benchlib.measure(ours_thumbnail(files[:1], "keyframe", out))

    ours_key, ours_key_mb, ours_cpu = cpu_of(benchlib.measure, ours_thumbnail(files, "keyframe", out))
    if have_thumbnailer:
        theirs, theirs_mb, theirs_cpu = cpu_of(benchlib.measure_each,
            [["ffmpegthumbnailer", "-s", "320", "-t", "50%", "-i", f, "-o", os.path.join(out, f"ft{i}.jpg")]
             for i, f in enumerate(files)])
        benchlib.report("thumbnail", f"keyframe, {N} files, vs ffmpegthumbnailer", ours_key, theirs, ours_key_mb,
                        theirs_mb, detail=f"{N / ours_key:.1f} vs {N / theirs:.1f} files/s; CPU {ours_cpu:.2f} s vs "
                        f"{theirs_cpu:.2f} s ({theirs_cpu / ours_cpu:.1f}x)", target=10)
        # Twenty files still pay our ~45 ms of start-up (dynamic linking of libav's ~180 libraries) once in
        # ~190 ms. A worker process pays it once in its life, so the steady state is measured too.
        many = benchlib.copies(clip, STEADY_N, "thumbnail-copies")
        ours_many, ours_many_mb, ours_cpu = cpu_of(benchlib.measure, ours_thumbnail(many, "keyframe", out))
        theirs, theirs_mb, theirs_cpu = cpu_of(benchlib.measure_each,
            [["ffmpegthumbnailer", "-s", "320", "-t", "50%", "-i", f, "-o", os.path.join(out, f"ft{i}.jpg")]
             for i, f in enumerate(many)])
        benchlib.report("thumbnail", f"keyframe, {STEADY_N} files, vs ffmpegthumbnailer", ours_many, theirs,
                        ours_many_mb, theirs_mb, detail=f"{STEADY_N / ours_many:.1f} vs {STEADY_N / theirs:.1f} files/s; "
                        f"CPU {ours_cpu:.2f} s vs {theirs_cpu:.2f} s ({theirs_cpu / ours_cpu:.1f}x)", target=10)
    else:
        benchlib.log("ffmpegthumbnailer is not installed: keyframe comparison skipped")

    ours_exact, ours_exact_mb, ours_cpu = cpu_of(benchlib.measure, ours_thumbnail(files, "exact", out))
    theirs, theirs_mb, theirs_cpu = cpu_of(benchlib.measure_each,
        [["ffmpeg", "-v", "error", "-y", "-ss", "30", "-i", f, "-frames:v", "1", "-vf", "scale=320:-2",
          os.path.join(out, f"ff{i}.jpg")] for i, f in enumerate(files)])
    benchlib.report("thumbnail", f"exact at 50%, {N} files, vs ffmpeg -ss", ours_exact, theirs, ours_exact_mb,
                    theirs_mb, detail=f"{N / ours_exact:.1f} vs {N / theirs:.1f} files/s; CPU {ours_cpu:.2f} s vs "
                    f"{theirs_cpu:.2f} s ({theirs_cpu / ours_cpu:.1f}x)", target=3)

    # 50 % of the clip is a keyframe; 31.9 s is the far end of a GOP, the worst case for exact seeking.
    ours_far, ours_far_mb, ours_cpu = cpu_of(benchlib.measure, ours_thumbnail(files, "exact", out, at="31.9"))
    theirs, theirs_mb, theirs_cpu = cpu_of(benchlib.measure_each,
        [["ffmpeg", "-v", "error", "-y", "-ss", "31.9", "-i", f, "-frames:v", "1", "-vf", "scale=320:-2",
          os.path.join(out, f"ff{i}.jpg")] for i, f in enumerate(files)])
    benchlib.report("thumbnail", f"exact at 31.9 s (end of a GOP), {N} files, vs ffmpeg -ss", ours_far, theirs,
                    ours_far_mb, theirs_mb, detail=f"{N / ours_far:.1f} vs {N / theirs:.1f} files/s; CPU "
                    f"{ours_cpu:.2f} s vs {theirs_cpu:.2f} s ({theirs_cpu / ours_cpu:.1f}x)", target=3)

    ours_best, ours_best_mb = benchlib.measure(ours_thumbnail(files, "best", out))
    benchlib.report("thumbnail", f"best vs our exact, {N} files", ours_best, ours_exact, ours_best_mb, ours_exact_mb,
                    detail=f"best takes {ours_best / ours_exact:.2f}x the time of exact (target <= 3x)",
                    target=round(1 / 3, 3), internal=True)

    story = benchlib.fresh("storyboard-out")
    ours_sb, ours_sb_mb, ours_cpu = cpu_of(benchlib.measure, [benchlib.BIN, "storyboard", clip, "-o", story,
                                                              "--interval", "2", "--tile-width", "160",
                                                              "--columns", "10"])
    theirs, theirs_mb, theirs_cpu = cpu_of(benchlib.measure, ["ffmpeg", "-v", "error", "-y", "-i", clip, "-vf",
                                                              "fps=1/2,scale=160:-2,tile=10x3", "-frames:v", "1",
                                                              os.path.join(story, "ffmpeg-sheet.jpg")])
    benchlib.report("storyboard", "60 s 1080p, tile every 2 s, vs ffmpeg fps+scale+tile", ours_sb, theirs, ours_sb_mb,
                    theirs_mb, detail=f"CPU {ours_cpu:.2f} s vs {theirs_cpu:.2f} s ({theirs_cpu / ours_cpu:.1f}x)",
                    target=3)

    if have_thumbnailer:
        ours_one, ours_one_mb = benchlib.measure(ours_thumbnail(files[:1], "best", out))
        theirs, theirs_mb = benchlib.measure(["ffmpegthumbnailer", "-s", "320", "-t", "50%", "-i", files[0], "-o",
                                              os.path.join(out, "ft-one.jpg")])
        benchlib.report("thumbnail", "one job (best), peak memory vs ffmpegthumbnailer", ours_one, theirs,
                        ours_one_mb, theirs_mb, detail="peak RSS of one process, one file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
