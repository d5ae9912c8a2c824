#!/usr/bin/env python3
"""Probe throughput: `mediaworker probe` of N files in one process against `ffprobe` once per file.

Probing is mostly process start-up for ffprobe; the worker probes in a long-lived process, so the in-process
path is what a job pays. Both read the same hard-linked copies of the reference clip, in the same run.
"""
import os
import sys

from benchlib import BIN, copies, log, measure, measure_each, reference_clip, report

COUNT = int(os.environ.get("MW_BENCH_PROBE_FILES", "50"))


def main():
    files = copies(reference_clip(), COUNT, "probe-files")
    ffprobe_cmds = [["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", path]
                    for path in files]
    # Warm the page cache for both sides alike.
    measure(["cat"] + files)
    ours_s, ours_mb = measure([BIN, "probe", "--compact"] + files)
    theirs_s, theirs_mb = measure_each(ffprobe_cmds)
    log(f"probe: {COUNT} files, mediaworker {ours_s:.3f} s ({COUNT / ours_s:.0f} files/s), "
        f"ffprobe {theirs_s:.3f} s ({COUNT / theirs_s:.1f} files/s)")
    report("probe", f"{COUNT} files, one process vs one ffprobe per file", ours_s, theirs_s, ours_mb, theirs_mb,
           detail=f"{COUNT / ours_s:.0f} vs {COUNT / theirs_s:.1f} files/s", target="far ahead (issue 2)")


if __name__ == "__main__":
    sys.exit(main())
