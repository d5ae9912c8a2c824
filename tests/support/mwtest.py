"""Helpers shared by the integration tests: the binary under test, a generated media corpus, ffprobe.

Media is generated with the ffmpeg CLI (lavfi sources) into MW_TEST_WORKDIR/corpus once per build tree
and reused by every test that asks for the same name, so the suite stays fast on a small machine.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

BIN = os.environ.get("MW_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "mediaworker"))
WORKDIR = os.environ.get("MW_TEST_WORKDIR", os.path.join(tempfile.gettempdir(), "mediaworker-tests"))
FIXTURES = os.environ.get("MW_TEST_FIXTURES", os.path.join(os.path.dirname(__file__), "..", "..", "fixtures"))
CORPUS = os.path.join(WORKDIR, "corpus")

failures = []


def check(condition, message):
    """Records a failed expectation and keeps going, so one run reports every mismatch."""
    if not condition:
        failures.append(message)
        print("FAIL: " + message, file=sys.stderr)
    return condition


def finish():
    """Exits non-zero when any check failed."""
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


def run(args, timeout=300, env=None, check_rc=None, stdin=None):
    """Runs the binary; returns CompletedProcess with text output. A hang fails the test via timeout."""
    full_env = dict(os.environ)
    full_env.setdefault("MW_LOG_FORMAT", "json")
    if env:
        full_env.update(env)
    proc = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=stdin)
    if check_rc is not None and proc.returncode != check_rc:
        raise AssertionError(f"{args}: exit {proc.returncode}, expected {check_rc}\n{proc.stderr[-4000:]}")
    return proc


def ffmpeg(args, timeout=600):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"] + list(args), check=True,
                   timeout=timeout)


def media(name, ffmpeg_args):
    """Path of corpus file `name`, generating it with `ffmpeg ... <path>` when it does not exist yet."""
    os.makedirs(CORPUS, exist_ok=True)
    path = os.path.join(CORPUS, name)
    if not os.path.exists(path):
        tmp = path + ".part" + os.path.splitext(name)[1]
        ffmpeg(list(ffmpeg_args) + [tmp])
        os.replace(tmp, path)
    return path


def worker_clip(dest):
    """Hard-links the worker tests' clip (1 s of 320x240 H.264 at 25 fps, from the corpus) to dest; returns dest."""
    os.link(media("worker-clip.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
                                      "-c:v", "libx264", "-pix_fmt", "yuv420p"]), dest)
    return dest


def ffprobe(path, extra=()):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams",
                          "-show_chapters"] + list(extra) + [path],
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def has_encoder(name):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" "))


def fresh_dir(name):
    path = os.path.join(WORKDIR, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def leftovers(root):
    """Temporary or partial files anywhere under root: what an interrupted write would leave behind."""
    found = []
    for top, dirs, files in os.walk(root):
        for name in files + dirs:
            if ".tmp" in name or name.endswith(".part"):
                found.append(os.path.join(top, name))
    return found
