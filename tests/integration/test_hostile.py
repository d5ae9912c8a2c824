"""The hostile corpus through `mediaworker serve`: every case must end with a named error in a failed report
(or the dead-letter queue for a refused message), the worker still serving (a good job right after works),
the scratch directory empty, no temporary or partial file under the output root, and no sanitizer report
in the worker's log (job processes write to the same log).

Files that must keep exactly their bytes are committed under fixtures/hostile and fixtures/broken; bombs
are generated here (a few hundred bytes each). URL inputs meet a local origin server: the default policy
refuses loopback, so one worker runs with the default policy and another allows exactly 127.0.0.1.
"""
import os
import shutil
import struct
import sys
import time
import zlib

import data_service
import origin
import mwtest
import rabbitmq
from mwtest import check, media
from worker import Worker, publish, queue_depth, take_all, wait_until

QUEUE = "media.process"
USER = 42
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


def png_bomb(path, width, height):
    """A valid PNG header declaring width x height, with a tiny compressed row stream behind it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)))
        f.write(chunk(b"IEND", b""))


def build_inputs(input_root):
    user_dir = os.path.join(input_root, str(USER))
    other = os.path.join(input_root, "43")
    os.makedirs(user_dir)
    os.makedirs(other)
    clip = media("hostile-clip.mp4", ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1",
                                       "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
    os.link(clip, os.path.join(user_dir, "good.mp4"))
    os.link(clip, os.path.join(other, "private.mp4"))
    for sub, names in (("hostile", ("playlist.mp4", "ffconcat.mp4", "ansi-text.mp4")),
                       ("broken", ("truncated.mp4", "zero-bytes.mp4", "random-bytes.mp4", "header-only.mp4"))):
        for name in names:
            shutil.copy(os.path.join(mwtest.FIXTURES, sub, name), os.path.join(user_dir, name))
    # A pattern name next to a file it would match, so image2 expansion would find something to read.
    shutil.copy(os.path.join(user_dir, "good.mp4"), os.path.join(user_dir, "img001.png"))
    open(os.path.join(user_dir, "img%03d.png"), "wb").write(b"\x89PNG")
    png_bomb(os.path.join(user_dir, "pixels-8000.png"), 8000, 8000)
    png_bomb(os.path.join(user_dir, "pixels-100000.png"), 100000, 100000)
    # Two frames ten hours apart.
    media("hostile-duration.mkv", ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1", "-frames:v", "2",
                                   "-vf", "setpts=N*36000/TB", "-fps_mode", "passthrough", "-c:v", "libx264",
                                   "-preset", "ultrafast"])
    os.link(os.path.join(mwtest.CORPUS, "hostile-duration.mkv"), os.path.join(user_dir, "duration.mkv"))
    maps = []
    for _ in range(300):
        maps += ["-map", "0:a"]
    media("hostile-streams.mka", ["-f", "lavfi", "-i", "sine=duration=0.1:sample_rate=8000"] + maps +
          ["-c:a", "pcm_s16le"])
    os.link(os.path.join(mwtest.CORPUS, "hostile-streams.mka"), os.path.join(user_dir, "streams.mka"))
    # Ten copies of a 2 s MPEG-TS glued together: timestamps restart, the container claims 2 s.
    segment = media("hostile-segment.ts", ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
                                           "-c:v", "mpeg2video"])
    with open(os.path.join(user_dir, "loop.ts"), "wb") as f:
        for _ in range(10):
            f.write(open(segment, "rb").read())
    slow = media("hostile-long.mkv", ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=40",
                                      "-c:v", "mpeg4", "-q:v", "5"])
    os.link(slow, os.path.join(user_dir, "long.mkv"))



def scratch_entries(output_root):
    scratch = os.path.join(output_root, ".scratch")
    return os.listdir(scratch) if os.path.isdir(scratch) else []


def sanitizer_lines(w):
    return [l.get("raw", "") for l in w.log_lines() if any(m in l.get("raw", "") for m in SANITIZER_MARKS)]


class Run:
    """One worker and the cases sent to it, each followed by a good job."""

    def __init__(self, broker, ds, roots, label, **env):
        self.broker, self.ds, self.roots, self.label = broker, ds, roots, label
        self.w = Worker(broker, ds, *roots, name=f"hostile-{label}", MW_SLOTS=2, **env).start()

    def case(self, name, file_info, operations, codes, timeout=40):
        """Publishes the case and a good job after it; checks the outcome of both."""
        body = {"user_id": USER, "file_info": file_info, "operations": operations}
        dead_before = queue_depth(self.broker, QUEUE + ".dead")
        job_id = publish(self.broker, body, message_id=f"hostile-{self.label}-{name}")
        try:
            self.ds.wait_for(lambda r: self.ds.reports_for(job_id, 200), timeout)
        except TimeoutError:
            check(False, f"{name}: no report in {timeout} s")
            return
        report = self.ds.reports_for(job_id, 200)[-1]["json"]["new_file"]
        error = report.get("error") or {}
        check(report.get("status") == "failed" and error.get("code") in codes and error.get("message"),
              f"{name}: expected failed with one of {codes}, got {report.get('status')} {error}")
        if error.get("code") in ("PATH_REFUSED", "INVALID_MESSAGE"):
            wait_until(lambda: queue_depth(self.broker, QUEUE + ".dead") > dead_before, 10,
                       what=f"{name} dead-lettered")
        good = publish(self.broker, {"user_id": USER, "file_info": {"path": f"{USER}/good.mp4"},
                                     "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]})
        try:
            self.ds.wait_for(lambda r: self.ds.reports_for(good, 200), 30)
            ok = self.ds.reports_for(good, 200)[-1]["json"]["new_file"]
            check(ok.get("status") == "processed", f"{name}: the good job after it failed: {ok.get('error')}")
        except TimeoutError:
            check(False, f"{name}: the good job after it was not reported")
        check(self.w.alive(), f"{name}: the worker still serves")
        wait_until(lambda: queue_depth(self.broker, QUEUE) == 0, 10, what="work queue empty")
        check(not scratch_entries(self.roots[1]), f"{name}: scratch left: {scratch_entries(self.roots[1])}")
        check(not mwtest.leftovers(self.roots[1]), f"{name}: temporary files left: {mwtest.leftovers(self.roots[1])}")
        print(f"  {name}: {error.get('code')}: {error.get('message')}", file=sys.stderr)

    def finish(self):
        check(self.w.stop() == 0, f"{self.label}: worker exits 0")
        bad = sanitizer_lines(self.w)
        check(not bad, f"{self.label}: sanitizer report in the log: {bad[:5]}")


PROBE = [{"type": "probe"}]
THUMB = [{"type": "probe"}, {"type": "thumbnail", "width": 64}]
TRANSCODE = [{"type": "transcode", "preset": "web", "renditions": [120]}]
BROKEN = ("FORMAT_REFUSED", "NO_MEDIA_STREAM", "NO_PICTURE", "INVALID_DATA", "END_OF_FILE", "OUTPUT_CHECK")


def file_cases(r):
    p = f"{USER}/"
    r.case("hls-playlist", {"path": p + "playlist.mp4"}, THUMB, ("FORMAT_REFUSED",))
    r.case("ffconcat", {"path": p + "ffconcat.mp4"}, THUMB, ("FORMAT_REFUSED",))
    r.case("ansi-text", {"path": p + "ansi-text.mp4"}, THUMB, ("FORMAT_REFUSED", "INVALID_DATA"))
    r.case("dotdot", {"path": p + "../43/private.mp4"}, PROBE, ("PATH_REFUSED", "INVALID_MESSAGE"))
    r.case("concat-protocol", {"path": "concat:" + p + "good.mp4|" + p + "good.mp4"}, PROBE,
           ("PATH_REFUSED", "INVALID_MESSAGE"))
    r.case("subfile-protocol", {"path": "subfile,,start,0,end,100,,:" + p + "good.mp4"}, PROBE,
           ("PATH_REFUSED", "INVALID_MESSAGE"))
    r.case("image2-pattern", {"path": p + "img%03d.png"}, THUMB, ("PATH_REFUSED", "INVALID_MESSAGE"))
    r.case("pixels-8000", {"path": p + "pixels-8000.png"}, THUMB, ("TOO_MANY_PIXELS",))
    r.case("pixels-100000", {"path": p + "pixels-100000.png"}, THUMB, ("TOO_MANY_PIXELS",))
    r.case("duration-bomb", {"path": p + "duration.mkv"}, THUMB, ("TOO_LONG",))
    r.case("stream-bomb", {"path": p + "streams.mka"}, PROBE, ("TOO_MANY_STREAMS",))
    r.case("runaway-transcode", {"path": p + "loop.ts"}, TRANSCODE, ("RUNAWAY",), timeout=120)
    for name in ("truncated", "zero-bytes", "random-bytes", "header-only"):
        r.case(name, {"path": f"{p}{name}.mp4"}, THUMB, BROKEN)


def url_refusals(r, port):
    for name, url in (("url-loopback", f"http://127.0.0.1:{port}/clip.mp4"),
                      ("url-localhost", f"http://localhost:{port}/clip.mp4"),
                      ("url-metadata", "http://169.254.169.254/latest/meta-data/"),
                      ("url-private", "http://10.1.2.3/clip.mp4"),
                      ("url-v6-loopback", f"http://[::1]:{port}/clip.mp4")):
        r.case(name, {"url": url}, PROBE, ("URL_REFUSED",))


def url_transfers(r, port):
    base = f"http://127.0.0.1:{port}"
    for name in ("metadata", "private", "v6"):
        r.case(f"url-redirect-{name}", {"url": f"{base}/redirect-{name}"}, PROBE, ("URL_REFUSED",))
    r.case("url-too-large", {"url": f"{base}/huge"}, PROBE, ("DOWNLOAD_TOO_LARGE",))
    # A stall is transient: retried through both tiers (1 s, 2 s), then reported failed and dead-lettered.
    dead_before = queue_depth(r.broker, QUEUE + ".dead")
    r.case("url-stall", {"url": f"{base}/stall"}, PROBE, ("DOWNLOAD_FAILED",), timeout=60)
    check(queue_depth(r.broker, QUEUE + ".dead") > dead_before, "url-stall: dead-lettered after the last tier")


def main():
    work = mwtest.fresh_dir("hostile")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    os.makedirs(input_root)
    build_inputs(input_root)
    roots = (input_root, output_root)
    server = origin.start(os.path.join(input_root, str(USER), "good.mp4"))
    port = server.server_address[1]
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        try:
            steps = (
                ("files", {}, lambda r: (file_cases(r), url_refusals(r, port))),
                ("urls", {"MW_URL_ALLOW_NETWORKS": "127.0.0.1/32", "MW_URL_MAX_BYTES": 100000,
                          "MW_URL_TIMEOUT": 2}, lambda r: url_transfers(r, port)),
                # The in-job deadline check ends the transcode; the supervisor's SIGKILL is the backstop.
                ("deadline", {"MW_JOB_DEADLINE": 2}, lambda r: r.case(
                    "deadline", {"path": f"{USER}/long.mkv"},
                    [{"type": "transcode", "preset": "web", "renditions": [360, 240]}],
                    ("DEADLINE", "JOB_CRASHED"), timeout=30)),
            )
            for label, env, body in steps:
                started = time.monotonic()
                r = Run(broker, ds, roots, label, **env)
                try:
                    body(r)
                except Exception as e:  # a timeout in one step must not hide the others
                    check(False, f"{label}: {type(e).__name__}: {e}")
                r.finish()
                print(f"{label}: {time.monotonic() - started:.1f} s", file=sys.stderr)
            deadline = [nf for nf in (q["json"]["new_file"] for q in ds.reports_for("hostile-deadline-deadline"))]
            check(deadline and ("deadline" in deadline[-1]["error"]["message"] or
                                "timeout" in deadline[-1]["error"]["message"]),
                  f"deadline: the report says the deadline passed ({deadline[-1:]})")
            dead = take_all(broker, QUEUE + ".dead")
            check(all((p.headers or {}).get("x-mw-error") for p, _ in dead), "every dead letter carries x-mw-error")
            print(f"dead-lettered: {len(dead)}", file=sys.stderr)
        finally:
            ds.stop()
            server.shutdown()
    mwtest.finish()


if __name__ == "__main__":
    main()
