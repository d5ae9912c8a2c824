"""`mediaworker run JOB.json`: one job message end to end in-process, with the report on stdout."""
import json
import os

import corpus
from mwtest import FIXTURES, check, finish, fresh_dir, run


def job_env(root, out):
    return {"MW_INPUT_ROOT": root, "MW_OUTPUT_ROOT": out, "MW_SCRATCH_DIR": os.path.join(out, ".scratch")}


def write_job(folder, name, message):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(message, f) if not isinstance(message, str) else f.write(message)
    return path


def test_seed_message():
    work = fresh_dir("run-seed")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(os.path.join(root, "42"))
    os.link(corpus.path("h264_aac.mp4"), os.path.join(root, "42", "clip.mp4"))
    job = write_job(work, "job.json", {"user_id": 42, "job_id": "job-1",
                                       "file_info": {"path": "42/clip.mp4", "name": "clip.mp4"},
                                       "operations": [{"type": "probe", "file": True}]})
    proc = run(["run", job], env=job_env(root, out))
    check(proc.returncode == 0, f"run exits 0: {proc.stderr[-1000:]}")
    report = json.loads(proc.stdout)["new_file"]
    check(report["status"] == "processed", "status processed")
    check(report["job_id"] == "job-1", "job id kept")
    check(report["probe"]["streams"][0]["codec"] == "h264", "probe summary in the report")
    probe_file = os.path.join(out, "42", "job-1", "probe.json")
    check(os.path.exists(probe_file), "probe.json written under <output>/<user>/<job>/")
    check(any(o["type"] == "probe" and o["path"] == "42/job-1/probe.json" for o in report["outputs"]),
          "output listed with its path relative to the output root")
    leftovers = [n for n in os.listdir(os.path.dirname(probe_file)) if ".tmp" in n]
    check(not leftovers, f"no temporary files left: {leftovers}")
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    check(any(line.get("job_id") == "job-1" and line.get("request_id") for line in lines),
          "log lines carry the job id and request id")
    # A redelivery of the same job overwrites the same files.
    again = run(["run", job], env=job_env(root, out))
    check(again.returncode == 0 and os.listdir(os.path.join(out, "42")) == ["job-1"], "rerun is idempotent")
    # Without "file", the report is the probe's only result: nothing is written, not even the job's folder.
    plain = write_job(work, "plain.json", {"user_id": 42, "job_id": "job-2", "file_info": {"path": "42/clip.mp4"},
                                          "operations": [{"type": "probe"}]})
    proc = run(["run", plain], env=job_env(root, out))
    report = json.loads(proc.stdout)["new_file"]
    check(proc.returncode == 0 and report["status"] == "processed", "plain probe: processed")
    check(report["outputs"] == [] and report["probe"]["streams"][0]["width"] == 320,
          f"plain probe: no outputs, the full probe in the report: {report['outputs']}")
    check(not os.path.exists(os.path.join(out, "42", "job-2")), "plain probe: no output folder made")
    bad = write_job(work, "bad.json", {"user_id": 42, "job_id": "job-3", "file_info": {"path": "42/clip.mp4"},
                                      "operations": [{"type": "probe", "file": "yes"}]})
    proc = run(["run", bad], env=job_env(root, out))
    report = json.loads(proc.stdout)["new_file"]
    check(proc.returncode != 0 and report["error"]["code"] == "INVALID_MESSAGE" and
          "probe.file" in report["error"]["message"], f"probe.file must be a boolean: {report.get('error')}")


def test_hardware_fallback_is_recorded():
    """No GPU here: auto and an explicit cuda must both complete in software and say so."""
    work = fresh_dir("run-hwaccel")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(root)
    os.link(corpus.path("h264_aac.mp4"), os.path.join(root, "clip.mp4"))
    job = write_job(work, "job.json", {"user_id": 3, "file_info": {"path": "clip.mp4"},
                                       "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 160}]})
    for requested in ("auto", "cuda", "none"):
        proc = run(["run", job, "--hwaccel", requested], env=job_env(root, out))
        report = json.loads(proc.stdout)["new_file"]
        acceleration = report.get("acceleration", {})
        check(proc.returncode == 0 and report["status"] == "processed", f"hwaccel={requested}: job completes")
        check(acceleration.get("requested") == requested and acceleration.get("decode") == "software" and
              acceleration.get("device") == "software" and acceleration.get("encode") == "software",
              f"hwaccel={requested}: recorded {acceleration}")
        if requested == "none":
            check(acceleration.get("fallback") is None, "no fallback when none was asked")
        else:
            check("cuda" in (acceleration.get("fallback") or ""), f"hwaccel={requested}: fallback reason names cuda")
    decoded = run(["decode", corpus.path("h264_aac.mp4"), "--hwaccel", "cuda"])
    line = json.loads(decoded.stdout)
    check(decoded.returncode == 0 and line["frames"] == 50 and line["corrupt_frames"] == 0,
          f"decode counts every frame: {line}")
    check(line["acceleration"]["decode"] == "software" and "cuda" in line["acceleration"]["fallback"],
          "decode falls back to software and says why")
    broken = run(["decode", os.path.join(FIXTURES, "broken", "truncated.mp4")])
    check(broken.returncode == 1 and json.loads(broken.stdout)["error"] == "INVALID_DATA", "decode of a broken file")
    caps = json.loads(run(["caps"], check_rc=0).stdout)
    check({d["name"] for d in caps["devices"]} == {"cuda", "vaapi", "qsv"}, "caps lists the device kinds")
    check(any(e["name"] == "libx264" and e["available"] for e in caps["encoders"]), "caps finds libx264 usable")


def test_failures_are_reported():
    work = fresh_dir("run-fail")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(root)
    os.link(os.path.join(FIXTURES, "broken", "random-bytes.mp4"), os.path.join(root, "garbage.mp4"))
    cases = [
        ({"user_id": 5, "file_info": {"path": "garbage.mp4"}, "operations": [{"type": "probe"}]}, "INVALID_DATA"),
        ({"user_id": 5, "file_info": {"path": "missing.mp4"}, "operations": [{"type": "probe"}]}, "ENOENT"),
        ({"user_id": 5, "file_info": {"path": "/etc/passwd"}, "operations": [{"type": "probe"}]}, "PATH_REFUSED"),
    ]
    for i, (message, code) in enumerate(cases):
        proc = run(["run", write_job(work, f"job{i}.json", message)], env=job_env(root, out))
        check(proc.returncode == 1, f"{code}: exit {proc.returncode}")
        report = json.loads(proc.stdout)["new_file"]
        check(report["status"] == "failed" and report["error"]["code"] == code,
              f"{code}: report says {report.get('error')}")
    invalid = run(["run", write_job(work, "bad.json", "{not json")], env=job_env(root, out))
    check(invalid.returncode == 1 and "not valid JSON" in invalid.stderr, "invalid message is refused with a reason")


if __name__ == "__main__":
    corpus.build()
    test_seed_message()
    test_hardware_fallback_is_recorded()
    test_failures_are_reported()
    finish()
