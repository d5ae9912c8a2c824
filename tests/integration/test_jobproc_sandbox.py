"""Jobs under `serve` run confined (each in its own child of the warm job process: seccomp filter, no new
privileges, Landlock on the job's own paths where the kernel has it, an unprivileged user by default), and
the whole libav pipeline still works inside: probe, thumbnail, storyboard and a transcode with HLS
complete, which proves the filter allows what the pipeline needs. test_hostile_job.py attacks it from inside. tests/unit/test_sandbox.c proves the
other half: no socket, no exec, no fork, no reads outside the allowed directories."""
import os
import pwd
import shutil
import sys
import urllib.request

import data_service
import mwtest
import rabbitmq
from mwtest import check, finish
from worker import Worker, publish

OPERATIONS = [{"type": "probe"}, {"type": "thumbnail", "width": 160, "select": "best"},
              {"type": "storyboard", "interval": 1, "tile_width": 80},
              {"type": "transcode", "renditions": [240], "hls": True, "remux": False}]


def status_fields(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def check_job_user(broker, ds, input_root, output_root):
    """As root with MW_JOB_USER set, job processes run as that user (containers that must start as root)."""
    if os.geteuid() != 0:
        print("not root: MW_JOB_USER is not exercised", file=sys.stderr)
        return
    nobody = pwd.getpwnam("nobody")
    shared_out = os.path.join(os.path.dirname(output_root), "out-nobody")
    os.makedirs(os.path.join(shared_out, ".scratch"), exist_ok=True)
    for folder in (shared_out, os.path.join(shared_out, ".scratch")):
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    os.chmod(input_root, 0o755)
    os.chmod(os.path.join(input_root, "clip.mp4"), 0o644)
    ds.reset()
    w = Worker(broker, ds, input_root, shared_out, MW_SLOTS=1, MW_JOB_USER="nobody", MW_LOG_LEVEL="debug").start()
    job = publish(broker, {"user_id": 22, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "probe"}]})
    ds.wait_for(lambda r: len(r) >= 1, 60)
    report = [(r["json"] or {}).get("new_file", {}) for r in ds.requests][0]
    check(report.get("job_id") == job and report.get("status") == "processed",
          f"a job runs as nobody: {report.get('error')}")
    check(any("user dropped 1" in l.get("msg", "") for l in w.log_lines()), "the job's process dropped to nobody")
    check(w.stop() == 0, "worker with MW_JOB_USER exits 0")


def check_root_without_setuid(broker, ds, input_root, output_root):
    """A root worker that cannot switch users (a container without CAP_SETUID) still runs jobs, and says so:
    one warning at start and /readyz."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        print("not root or no setpriv: the no-CAP_SETUID case is not exercised", file=sys.stderr)
        return
    port = rabbitmq.free_port()
    ds.reset()
    w = Worker(broker, ds, input_root, output_root, MW_SLOTS=1, MW_HTTP_LISTEN=f"127.0.0.1:{port}",
               prefix=["setpriv", "--bounding-set", "-setuid,-setgid", "--inh-caps", "-setuid,-setgid"]).start()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
        code, body = r.status, r.read().decode()
    check(code == 200 and "run as root" in body, f"readyz says jobs run as root: {code} {body.strip()}")
    warnings = [l.get("msg", "") for l in w.log_lines() if l.get("level") == "warn" and "run as root" in l.get("msg", "")]
    check(len(warnings) == 1, f"one startup warning: {warnings}")
    job = publish(broker, {"user_id": 23, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "probe"}]})
    ds.wait_for(lambda r: len(r) >= 1, 60)
    report = [(r["json"] or {}).get("new_file", {}) for r in ds.requests][0]
    check(report.get("job_id") == job and report.get("status") == "processed", "jobs still run without CAP_SETUID")
    check(w.stop() == 0, "worker without CAP_SETUID exits 0")


def main():
    work = mwtest.fresh_dir("jobproc-sandbox")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    os.makedirs(input_root)
    os.link(mwtest.media("sandbox-clip.mp4", [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"]), os.path.join(input_root, "clip.mp4"))
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        try:
            w = Worker(broker, ds, input_root, output_root, MW_SLOTS=1, MW_LOG_LEVEL="debug").start()
            pids = w.job_pids()
            check(len(pids) == 1, f"one pre-started job process: {pids}")
            fields = status_fields(pids[0])
            check(fields.get("NoNewPrivs") == "1", "the warm job process has no new privileges")
            job = publish(broker, {"user_id": 21, "file_info": {"path": "clip.mp4"}, "operations": OPERATIONS})
            ds.wait_for(lambda r: len(r) >= 1, 120)
            report = [(r["json"] or {}).get("new_file", {}) for r in ds.requests][0]
            check(report.get("job_id") == job and report.get("status") == "processed",
                  f"every operation works inside the sandbox: {report.get('error')}")
            sandboxed = [l.get("msg", "") for l in w.log_lines() if "sandboxed: seccomp" in l.get("msg", "")]
            check(sandboxed and "seccomp 1" in sandboxed[0], f"the job's process logs its sandbox: {sandboxed}")
            if os.geteuid() == 0:
                check(sandboxed and "user dropped 1" in sandboxed[0], "by default a root worker's jobs drop to an "
                      "unprivileged user")
            types = sorted({o["type"] for o in report.get("outputs", [])})
            check({"thumbnail", "storyboard", "hls"} <= set(types), f"outputs made: {types}")
            check(w.stop() == 0, "worker exits 0")
            logs = open(w.log_path).read()
            check_job_user(broker, ds, input_root, output_root)
            check_root_without_setuid(broker, ds, input_root, output_root)
            check("ERROR: AddressSanitizer" not in logs and "LeakSanitizer has encountered" not in logs and
                  "ERROR: LeakSanitizer" not in logs and "runtime error" not in logs,
                  "no sanitizer report from the worker or its job processes")
        finally:
            ds.stop()
    finish()


if __name__ == "__main__":
    sys.exit(main())
