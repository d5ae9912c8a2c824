"""Attack code running inside a real job process under `serve` (tests/support/attack_preload.c, loaded with
LD_PRELOAD, acting when the job opens its input, i.e. after the sandbox is applied) stands in for a decoder
exploited by a hostile upload. Every attempt to reach outside the job must fail: signals, priorities and
limits of other processes, device nodes, another user's upload, another job's or user's output folder,
the supervisor's environment. The job's report must still be right. A second run forges answer frames on
every socket the job holds: the supervisor must refuse them (JOB_PROTOCOL for that job only), and the next
job, another user's, must report its own result. A third run searches each job's memory for a text that only
an earlier job of another user carried (in its upload's name and title tag, so in its message, its request
and its results): a job forked from the warm process must inherit none of it, while the job that carried
it must find it (the search sees the heap)."""
import os
import shutil
import subprocess
import sys

import data_service
import mwtest
import rabbitmq
from mwtest import check, finish
from worker import Worker, publish

ATTACKS = ["kill-victim", "tgkill-victim", "tkill-victim", "kill-parent", "kill-group", "setpriority-victim",
           "setpriority-parent", "prlimit-victim", "pdeathsig-clear", "write-dev-shm", "write-dev-kmsg",
           "read-other-upload", "read-input-root-sibling", "write-other-user", "write-other-job",
           "write-input-root", "read-parent-environ", "write-etc"]


def build_preload(work):
    source = os.path.join(os.path.dirname(__file__), "..", "support", "attack_preload.c")
    library = os.path.join(work, "attack_preload.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", library, source, "-ldl"], check=True)
    return library


def attack_lines(w):
    lines = []
    for entry in w.log_lines():
        text = entry.get("raw", "")
        if text.startswith("ATTACK "):
            lines.append(text.split(" ", 3)[1:])
    return lines


def new_files(ds):
    return [(r["path"], (r["json"] or {}).get("new_file") or {}) for r in ds.requests]


def main():
    if not shutil.which("cc"):
        print("no C compiler: the attack library cannot be built", file=sys.stderr)
        return 77
    work = mwtest.fresh_dir("hostile-job")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    for user in ("42", "43"):
        os.makedirs(os.path.join(input_root, user))
        mwtest.worker_clip(os.path.join(input_root, user, "clip.mp4"))
    with open(os.path.join(input_root, "43", "secret.txt"), "w") as f:
        f.write("user 43's secret\n")
    with open(os.path.join(input_root, "42", "other.txt"), "w") as f:
        f.write("another upload of user 42\n")
    other_job = os.path.join(output_root, "42", "earlier-job")
    other_user = os.path.join(output_root, "43", "their-job")
    for folder in (other_job, other_user):
        os.makedirs(folder)
    library = build_preload(work)
    victim = subprocess.Popen(["sleep", "600"])
    env = {
        "LD_PRELOAD": library,
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
        "ATTACK_VICTIM": str(victim.pid),
        "ATTACK_OTHER_UPLOAD": os.path.join(input_root, "43", "secret.txt"),
        "ATTACK_SIBLING_UPLOAD": os.path.join(input_root, "42", "other.txt"),
        "ATTACK_OTHER_USER_FILE": os.path.join(other_user, "planted.jpg"),
        "ATTACK_OTHER_JOB_FILE": os.path.join(other_job, "planted.jpg"),
        "ATTACK_INPUT_ROOT_FILE": os.path.join(input_root, "42", "planted.mp4"),
        "MW_SLOTS": 1, "MW_JOB_PROCESSES": 1,
    }
    try:
        with rabbitmq.RabbitMQ(work) as broker:
            ds = data_service.DataService().start()
            try:
                w = Worker(broker, ds, input_root, output_root, **env).start()
                publish(broker, {"user_id": 42, "job_id": "attack-1", "file_info": {"path": "42/clip.mp4"},
                                 "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]})
                ds.wait_for(lambda r: len(r) >= 1, 60)
                check(w.stop() == 0, "attack: worker exits 0")
                lines = attack_lines(w)
                seen = {name: outcome for name, outcome, *_ in lines}
                check(sorted(seen) == sorted(ATTACKS), f"every attack ran inside the job: {sorted(seen)}")
                for name, outcome, *detail in lines:
                    check(outcome == "blocked", f"attack {name}: {outcome} {' '.join(detail)}")
                check(victim.poll() is None, "the unrelated process is still alive")
                for path in ("/dev/shm/mw-attack", env["ATTACK_OTHER_USER_FILE"], env["ATTACK_OTHER_JOB_FILE"],
                             env["ATTACK_INPUT_ROOT_FILE"], "/etc/mw-attack"):
                    check(not os.path.exists(path), f"nothing written at {path}")
                (path, report), = new_files(ds)
                check(path == "/api/v1/users/42/files" and report.get("status") == "processed",
                      f"the attacked job still reports its own result: {report.get('status')} {report.get('error')}")
                check(all(o["path"].startswith("42/attack-1/") for o in report.get("outputs", [])) and
                      report.get("outputs"), "its outputs are in its own folder")

                ds.reset()
                w = Worker(broker, ds, input_root, output_root, ATTACK_FORGE_INPUT="/in/42/", **env).start()
                publish(broker, {"user_id": 42, "job_id": "forge-1", "file_info": {"path": "42/clip.mp4"},
                                 "operations": [{"type": "probe"}]})
                publish(broker, {"user_id": 43, "job_id": "after-1", "file_info": {"path": "43/clip.mp4"},
                                 "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]})
                ds.wait_for(lambda r: len(r) >= 2, 90)
                check(w.stop() == 0, "forge: worker exits 0")
                reports = dict((nf.get("job_id"), (path, nf)) for path, nf in new_files(ds))
                check(sorted(reports) == ["after-1", "forge-1"], f"forge: one report per job: {sorted(reports)}")
                path, forged = reports.get("forge-1", ("", {}))
                check(path == "/api/v1/users/42/files" and forged.get("status") == "failed" and
                      forged.get("error", {}).get("code") == "JOB_PROTOCOL",
                      f"a forged answer fails only its own job, as JOB_PROTOCOL: {forged.get('error')}")
                path, after = reports.get("after-1", ("", {}))
                check(path == "/api/v1/users/43/files" and after.get("status") == "processed" and
                      after.get("path", "").startswith("43/after-1/"),
                      f"the next job (another user) reports its own result: {after.get('status')} {after.get('path')}")
                check(not any("forged" in str(nf) for _, nf in new_files(ds)), "nothing forged reached a report")
                check(any(l[0] == "forge" for l in attack_lines(w)), "the forging code ran")

                ds.reset()
                marker = "zq7-private-upload-of-user-43"
                subprocess.run(["ffmpeg", "-v", "error", "-i", os.path.join(input_root, "43", "clip.mp4"),
                                "-c", "copy", "-metadata", f"title={' '.join([marker] * 40)}",
                                os.path.join(input_root, "43", marker + ".mp4")], check=True)
                w = Worker(broker, ds, input_root, output_root, ATTACK_SCAN_MARKER_REVERSED=marker[::-1],
                           **env).start()
                # A field the worker ignores, as an upload backend's messages carry (the uploader's notes, say).
                publish(broker, {"user_id": 43, "job_id": "private-1", "notes": " ".join([marker] * 6000),
                                 "file_info": {"path": f"43/{marker}.mp4", "name": f"{marker}.mp4"},
                                 "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]})
                ds.wait_for(lambda r: len(r) >= 1, 60)
                for n in (2, 3):
                    publish(broker, {"user_id": 42, "job_id": f"n{n}", "file_info": {"path": "42/clip.mp4"},
                                     "operations": [{"type": "probe"}]})
                    ds.wait_for(lambda r, n=n: len(r) >= n, 60)
                check(w.stop() == 0, "scan: worker exits 0")
                scans = [l for l in attack_lines(w) if l[0].startswith("scan-")]
                print("memory scans:", scans)
                own = [l for l in scans if l[0] == "scan-own"]
                others = [l for l in scans if l[0] == "scan-earlier-job"]
                check(len(own) == 1 and own[0][1] == "found" and int(own[0][2].split("scanned=")[1]) > 1 << 20,
                      f"the scan sees a job's memory: it finds the job's own request: {own}")
                check(len(others) == 2, f"both later jobs searched their memory: {others}")
                for name, outcome, *detail in others:
                    check(outcome == "blocked", f"a later job holds nothing of user 43's job: {outcome} {detail}")
                check(all(nf.get("status") == "processed" for _, nf in new_files(ds)), "every scanned job succeeded")
            finally:
                ds.stop()
    finally:
        victim.kill()
    finish()


if __name__ == "__main__":
    sys.exit(main())
