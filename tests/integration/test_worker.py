"""`mediaworker serve` against a private RabbitMQ and a stand-in Data Service.

Covers: the seed message end to end; invalid and hostile messages dead-lettered with the reason; Data
Service 503 then 200, Retry-After, 404, 400, and down past every retry (retry tier, then processed);
job processes killed (SIGKILL), past the deadline, at the memory cap; a committed result reported again
instead of re-run, and a job failing part-way leaving no files; a job process shared by two slots
and given back before the report; SIGTERM during a job and during a download.
"""
import json
import os
import signal
import sys
import time

import data_service
import mwtest
import origin
import rabbitmq
from mwtest import check
from worker import Worker, publish, queue_depth, take_all, wait_until

QUEUE = "media.process"


def new_files(requests, job_id=None, status=None):
    out = []
    for r in requests:
        nf = (r["json"] or {}).get("new_file") or {}
        if (job_id is None or nf.get("job_id") == job_id) and (status is None or r["status"] == status):
            out.append(nf)
    return out


def proc_field(pid, name):
    """A field of /proc/<pid>/status, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith(name + ":")), None)
    except OSError:
        return None


def settled(broker):
    """Nothing ready in the work queue or the retry tiers."""
    return all(queue_depth(broker, q) == 0 for q in (QUEUE, QUEUE + ".retry.1", QUEUE + ".retry.2"))


def test_seed_message(broker, ds, roots):
    w = Worker(broker, ds, *roots, MW_DATA_SERVICE_TOKEN="tok-seed").start()
    for pid in w.job_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                names = [entry.split(b"=", 1)[0] for entry in f.read().split(b"\0")]
        except PermissionError:
            print("job process environment not readable here (not root): credential check skipped", file=sys.stderr)
            continue
        check(not {b"RABBITMQ_URL", b"POSTGRES_DATA_SERVICE_URL", b"MW_DATA_SERVICE_TOKEN"} & set(names),
              f"no credentials in a job process's environment: {sorted(names)}")
    job_id = publish(broker, {"user_id": 42, "file_info": {"path": "clip.mp4"}}, request_id="req-seed-1")
    reqs = ds.wait_for(lambda r: len(r) >= 1, 30)
    check(w.stop() == 0, "seed: worker exits 0 on SIGTERM")
    r = reqs[0]
    nf = r["json"]["new_file"]
    check(r["method"] == "PATCH" and r["path"] == "/api/v1/users/42/files", f"seed: PATCH path {r['path']}")
    check(r["headers"].get("X-Request-ID") == "req-seed-1", "seed: X-Request-ID propagated")
    check(r["headers"].get("Idempotency-Key") == f"42:{job_id}" and job_id == nf.get("job_id"),
          "seed: Idempotency-Key is <user>:<job id>")
    check(nf.get("status") == "processed", f"seed: status {nf.get('status')}")
    check(nf.get("probe", {}).get("streams", [{}])[0].get("width") == 320, "seed: probe summary in the report")
    check(nf.get("probe", {}).get("streams", [{}])[0].get("codec") == "h264", "seed: the full probe is in the report")
    check(len(reqs) == 1, f"seed: exactly one report ({len(reqs)})")
    check(queue_depth(broker, QUEUE) == 0, "seed: message acked (queue empty after the worker left)")
    logs = [l for l in w.log_lines() if l.get("request_id") == "req-seed-1"]
    check(len(logs) >= 2 and all(l.get("job_id") == job_id for l in logs), "seed: log lines carry job and request id")


def test_submit_and_isolation_none(broker, ds, roots):
    """`mediaworker submit` publishes jobs the worker runs (here in-process, MW_ISOLATION=none)."""
    w = Worker(broker, ds, *roots, MW_ISOLATION="none").start()
    check(not w.job_pids(), "isolation none: no job processes")
    env = dict(w.env)
    out = mwtest.run(["submit", "--op", "probe", "--user-id", "77", "clip.mp4",
                      os.path.join(roots[0], "clip.mp4")], env=env, timeout=60)
    check(out.returncode == 0, f"submit: exit {out.returncode}: {out.stderr[-500:]}")
    jobs = [json.loads(line) for line in out.stdout.splitlines()]
    check(len(jobs) == 2 and all(j["path"] == "clip.mp4" for j in jobs), f"submit: paths relative ({jobs})")
    ds.wait_for(lambda r: len(r) >= 2, 30)
    check(w.stop() == 0, "isolation none: worker exits 0")
    for j in jobs:
        r = ds.reports_for(j["job_id"], 200)
        check(len(r) == 1 and r[0]["headers"].get("X-Request-ID") == j["request_id"] and
              r[0]["path"] == "/api/v1/users/77/files", f"submit: job {j['job_id']} reported with its ids")


def test_run_with_report(broker, ds, roots):
    """`mediaworker run --report` sends the same report as the worker would."""
    job = os.path.join(mwtest.WORKDIR, "run-report.json")
    with open(job, "w") as f:
        json.dump({"job_id": "run-report-1", "user_id": 3, "file_info": {"path": "clip.mp4"}}, f)
    ds.script(503)
    env = {"POSTGRES_DATA_SERVICE_URL": ds.url, "MW_INPUT_ROOT": roots[0], "MW_OUTPUT_ROOT": roots[1],
           "MW_DEFAULT_OPERATIONS": "probe", "MW_DATA_SERVICE_TOKEN": "s3cret"}
    out = mwtest.run(["run", "--report", job], env=env, timeout=60)
    check(out.returncode == 0, f"run --report: exit {out.returncode}: {out.stderr[-500:]}")
    check([r["status"] for r in ds.requests] == [503, 200], "run --report: retried the 503")
    r = ds.requests[-1]
    check(r["headers"].get("Idempotency-Key") == "3:run-report-1" and
          r["headers"].get("Authorization") == "Bearer s3cret", "run --report: idempotency key and bearer token")
    check("s3cret" not in out.stderr, "run --report: the token is not logged")
    ds.reset(default=404)
    out = mwtest.run(["run", "--report", job], env=env, timeout=60)
    check(out.returncode == 1, "run --report: a refused report fails the command")


def test_invalid_messages(broker, ds, roots):
    w = Worker(broker, ds, *roots).start()
    cases = {
        "not-json": (b"{not json", None),
        "not-object": (b"[1, 2]", None),
        "no-user": ({"file_info": {"path": "clip.mp4"}}, None),
        "bad-user": ({"user_id": "forty-two", "file_info": {"path": "clip.mp4"}}, None),
        "no-file-info": ({"user_id": 7}, 7),
        "file-info-type": ({"user_id": 7, "file_info": "clip.mp4"}, 7),
        "dotdot": ({"user_id": 7, "file_info": {"path": "../../etc/passwd"}}, 7),
        "protocol": ({"user_id": 7, "file_info": {"path": "concat:clip.mp4|clip.mp4"}}, 7),
        "absolute": ({"user_id": 7, "file_info": {"path": "/etc/passwd"}}, 7),
        "unknown-op": ({"user_id": 7, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "explode"}]}, 7),
    }
    ids = {}
    for name, (body, _) in cases.items():
        ids[publish(broker, body, message_id=f"invalid-{name}")] = name
    dead = wait_until(lambda: queue_depth(broker, QUEUE + ".dead") >= len(cases) and True, 30,
                      what="every invalid message dead-lettered")
    time.sleep(0.5)
    check(w.stop() == 0, "invalid: worker exits 0")
    dead = take_all(broker, QUEUE + ".dead")
    by_id = {p.message_id: p for p, _ in dead}
    check(dead and len(dead) == len(cases), f"invalid: {len(dead)} of {len(cases)} dead-lettered exactly once")
    for message_id, name in ids.items():
        props = by_id.get(message_id)
        if not check(props is not None, f"invalid {name}: in the dead-letter queue"):
            continue
        check(bool((props.headers or {}).get("x-mw-error")), f"invalid {name}: x-mw-error header")
    check("user_id" in str(by_id["invalid-no-user"].headers.get("x-mw-error")), "invalid: reason names the field")
    reported = {nf.get("job_id") for nf in new_files(ds.requests)}
    for name, (_, user) in cases.items():
        if user:
            check(f"invalid-{name}" in reported, f"invalid {name}: reported as failed (user known)")
    for nf in new_files(ds.requests):
        check(nf.get("status") == "failed" and nf.get("error", {}).get("code"), f"invalid: failure report {nf}")
    check(settled(broker), "invalid: never requeued or retried")


def test_report_503_then_200(broker, ds, roots):
    ds.script(503, ("retry_after", 503, "1"))
    w = Worker(broker, ds, *roots).start()
    job_id = publish(broker, {"user_id": 5, "file_info": {"path": "clip.mp4"}})
    reqs = ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    time.sleep(0.5)
    check(w.stop() == 0, "503: worker exits 0")
    statuses = [r["status"] for r in ds.requests]
    check(statuses == [503, 503, 200], f"503: statuses {statuses}")
    check(len(new_files(ds.requests, job_id, 200)) == 1, "503: exactly one successful report")
    check(reqs[2]["time"] - reqs[1]["time"] >= 0.95, "503: Retry-After: 1 honoured")
    keys = {r["headers"].get("Idempotency-Key") for r in ds.requests}
    check(keys == {f"5:{job_id}"}, "503: every attempt carries the same Idempotency-Key")
    check(settled(broker) and queue_depth(broker, QUEUE + ".dead") == 0, "503: acked once, nothing retried")


def test_committed_result_reported_again(broker, ds, roots):
    """A job that finished but could not report goes to a retry tier; the retried copy finds the committed
    result and reports it again without running the job: the outputs are the same files, untouched. A
    manifest tampered with (an output missing) is not trusted: the job runs again."""
    ds.script(503, 503, 503)
    w = Worker(broker, ds, *roots).start()
    job_id = publish(broker, {"user_id": 16, "file_info": {"path": "clip.mp4"}, "operations": [
        {"type": "thumbnail", "width": 64}, {"type": "transcode", "preset": "web", "renditions": [120]}]})
    reqs = ds.wait_for(lambda r: [x["status"] for x in r] == [503, 503, 503], 60)
    first = new_files(reqs, job_id)[0]
    job_dir = os.path.join(roots[1], "16", job_id)
    files = {o["path"]: os.stat(os.path.join(roots[1], o["path"])) for o in first.get("outputs", [])}
    check(first.get("status") == "processed" and len(files) == 2 and
          os.path.isfile(os.path.join(job_dir, ".mw-result.json")),
          f"committed: the job finished and committed its result ({first.get('status')}, {list(files)})")
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    again = new_files(ds.requests, job_id, 200)
    check(len(again) == 1 and again[0].get("outputs") == first.get("outputs") and
          again[0].get("status") == "processed", f"committed: reported again with the same outputs ({again})")
    for path, st in files.items():
        now = os.stat(os.path.join(roots[1], path))
        check((now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), f"committed: {path} not rewritten")
    started = [l for l in w.log_lines() if l.get("job_id") == job_id and l.get("msg", "").startswith("job started")]
    check(len(started) == 1, f"committed: the job ran once ({len(started)} starts)")
    check(any("reporting it again" in l.get("msg", "") for l in w.log_lines() if l.get("job_id") == job_id),
          "committed: the log says the result was reported again")
    check(settled(broker) and queue_depth(broker, QUEUE + ".dead") == 0, "committed: acked once")

    # The same message again, with one output of the committed result gone: the job runs, not a re-report.
    os.unlink(os.path.join(roots[1], next(p for p in files if p.endswith(".mp4"))))
    ds.reset()
    publish(broker, {"user_id": 16, "file_info": {"path": "clip.mp4"}, "operations": [
        {"type": "thumbnail", "width": 64}, {"type": "transcode", "preset": "web", "renditions": [120]}]},
        message_id=job_id)
    ds.wait_for(lambda r: len(r) >= 1, 60)
    rerun = new_files(ds.requests, job_id, 200)
    check(rerun and rerun[0].get("status") == "processed" and
          all(os.path.isfile(os.path.join(roots[1], p)) for p in files), f"tampered: ran again ({rerun})")
    started = [l for l in w.log_lines() if l.get("job_id") == job_id and l.get("msg", "").startswith("job started")]
    check(len(started) == 2, f"tampered: a result with an output missing is not reported again ({len(started)})")
    check(w.stop() == 0, "committed: worker exits 0")


def test_failed_job_leaves_nothing(broker, ds, roots):
    """A job whose first operation wrote its files and whose second failed (past the deadline, the job
    process killed by the supervisor) is reported failed with no outputs, and its folder is gone."""
    w = Worker(broker, ds, *roots, MW_JOB_DEADLINE=3, MW_SLOTS=1).start()
    job_id = publish(broker, {"user_id": 17, "file_info": {"path": "long.mp4"}, "operations": [
        {"type": "thumbnail", "width": 64}, {"type": "transcode", "preset": "web", "renditions": [720]}]})
    job_dir = os.path.join(roots[1], "17", job_id)
    wait_until(lambda: os.path.isdir(job_dir) and any(n.endswith(".webp") or n.endswith(".jpg")
                                                      for n in os.listdir(job_dir)), 20,
               what="the thumbnail written before the transcode", interval=0.02)
    ds.wait_for(lambda r: len(r) >= 1, 30)
    nf = new_files(ds.requests, job_id)
    check(nf and nf[0].get("status") == "failed" and nf[0].get("outputs") == [] and nf[0].get("path") is None,
          f"part-way: reported failed with no outputs ({nf})")
    check(not os.path.exists(job_dir), f"part-way: the folder is gone ({os.listdir(job_dir) if os.path.isdir(job_dir) else ''})")
    check(w.stop() == 0, "part-way: worker exits 0")


def test_report_404_and_400(broker, ds, roots):
    ds.script(404, 400)
    w = Worker(broker, ds, *roots, MW_SLOTS=1).start()
    gone = publish(broker, {"user_id": 6, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 1, 30)
    refused = publish(broker, {"user_id": 6, "file_info": {"path": "clip.mp4"}})
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="400 dead-lettered")
    time.sleep(0.5)
    check(w.stop() == 0, "404: worker exits 0")
    check(len(ds.reports_for(gone)) == 1, "404: reported once, not retried")
    check(len(ds.reports_for(refused)) == 1, "400: reported once, not retried")
    dead = take_all(broker, QUEUE + ".dead")
    check(len(dead) == 1 and dead[0][0].message_id == refused and
          "refused" in dead[0][0].headers.get("x-mw-error", ""), "400: dead-lettered with the reason")
    check(settled(broker), "404/400: nothing left in the work or retry queues")


def test_report_answer_classes(broker, ds, roots):
    """Every class of Data Service answer has its verdict: retried in the slot when a retry soon may help
    (409 in progress, 429, 502, a reset, an answer that is not HTTP), sent to a retry tier when a person must
    act (302, 401, 403) or
    the wait is long (Retry-After as an HTTP date 59 s ahead: the slot does not hold it), acked when the user
    is gone (410), dead-lettered when the report itself is refused (413, 422)."""
    from email.utils import formatdate
    cases = [
        # (name, answers before the default 200, expected: "slot" | "tier" | "gone" | "dead")
        ("409", [409], "slot"),
        ("429", [429], "slot"),
        ("502", [502], "slot"),
        ("reset", ["drop"], "slot"),
        ("not http", ["garbage"], "slot"),
        ("302", [302], "tier"),
        ("401", [401], "tier"),
        ("403", [403], "tier"),
        ("503 Retry-After date", [("retry_after", 503, formatdate(time.time() + 59, usegmt=True))], "tier"),
        ("410", [410], "gone"),
        ("413", [413], "dead"),
        ("422", [422], "dead"),
    ]
    w = Worker(broker, ds, *roots, MW_SLOTS=1).start()
    for name, answers, expected in cases:
        ds.reset()
        ds.script(*answers)
        before = len([l for l in w.log_lines() if "retry." in l.get("msg", "")])
        job_id = publish(broker, {"user_id": 7, "file_info": {"path": "clip.mp4"}})
        if expected == "dead":
            wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what=f"{name} dead-lettered")
        else:
            ds.wait_for(lambda r: len(r) >= len(answers) + (expected != "gone"), 30)
        time.sleep(0.3)
        reports = ds.reports_for(job_id)
        tiers = len([l for l in w.log_lines() if "retry." in l.get("msg", "")]) - before
        accepted = [r for r in reports if r["status"] == 200]
        if expected in ("slot", "tier"):
            check(len(accepted) == 1, f"{name}: reported again and accepted ({[r['status'] for r in reports]})")
            check(tiers == (expected == "tier"), f"{name}: {'one retry tier' if expected == 'tier' else 'no tier'}"
                  f" ({tiers})")
            gap = reports[-1]["time"] - reports[0]["time"]
            check(gap < 10, f"{name}: the second try came {gap:.1f} s later, no long wait in the slot")
        elif expected == "gone":
            check(len(reports) == 1 and tiers == 0, f"{name}: reported once, not retried")
        else:
            dead = take_all(broker, QUEUE + ".dead")
            check(len(reports) == 1 and len(dead) == 1 and "refused" in dead[0][0].headers.get("x-mw-error", ""),
                  f"{name}: reported once, dead-lettered with the reason")
        check(settled(broker), f"{name}: nothing left in the work or retry queues")
    check(w.stop() == 0, "answers: worker exits 0")
    stopped = [l.get("msg", "") for l in w.log_lines() if l.get("msg", "").startswith("stopped:")]
    check(stopped and "1 users gone" in stopped[-1], f"answers: 410 counted as a user gone ({stopped[-1:]})")


def test_report_tls_failure(broker, ds, roots):
    """A TLS failure (here: https:// to a server that speaks plain HTTP) may heal (a certificate renewed, a
    proxy back): it goes through the retry tiers before the message is dead-lettered with curl's reason,
    never dead-lettered as refused at once."""
    w = Worker(broker, ds, *roots, POSTGRES_DATA_SERVICE_URL=ds.url.replace("http://", "https://"),
               HTTP_CLIENT_RETRIES=0, MW_RETRY_DELAYS="1,1").start()
    publish(broker, {"user_id": 7, "file_info": {"path": "clip.mp4"}})
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="dead-lettered after the tiers")
    dead = take_all(broker, QUEUE + ".dead")
    reason = dead[0][0].headers.get("x-mw-error", "") if dead else ""
    tiers = [l for l in w.log_lines() if "to media.process.retry." in l.get("msg", "")]
    check(len(tiers) == 2, f"TLS: both retry tiers tried first ({len(tiers)})")
    check("unavailable" in reason and ("SSL" in reason or "TLS" in reason),
          f"TLS: dead-lettered as unavailable, with curl's reason: {reason}")
    check(w.stop() == 0, "TLS: worker exits 0")


def test_data_service_down(broker, ds, roots):
    ds.reset(default=503)
    w = Worker(broker, ds, *roots).start()
    job_id = publish(broker, {"user_id": 8, "file_info": {"path": "clip.mp4"}})
    # HTTP_CLIENT_RETRIES=2: three attempts, then the message goes to the 1 s retry tier and comes back.
    ds.wait_for(lambda r: len(r) >= 4, 30)
    ds.default = 200
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    time.sleep(0.5)
    check(w.stop() == 0, "down: worker exits 0")
    ok = new_files(ds.requests, job_id, 200)
    check(len(ok) == 1 and ok[0].get("status") == "processed", "down: processed and reported once it came back")
    logs = "\n".join(json.dumps(l) for l in w.log_lines())
    check(f"{QUEUE}.retry.1" in logs, "down: went through the first retry tier")
    check("redelivered job" in logs, "down: the redelivery is recognised")
    check(settled(broker) and queue_depth(broker, QUEUE + ".dead") == 0, "down: nothing lost, nothing dead")


def test_forged_attempts(broker, ds, roots):
    """A producer's x-mw-attempt (999, or a copy's count with a made-up signature) is not believed: the
    message still goes through every retry tier before the dead-letter queue."""
    ds.reset(default=503)
    w = Worker(broker, ds, *roots, HTTP_CLIENT_RETRIES=0).start()
    forged = {"x-mw-attempt": 999, "x-mw-attempt-sig": "0" * 64}
    job_id = publish(broker, {"user_id": 9, "file_info": {"path": "clip.mp4"}}, headers=forged)
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="dead-lettered after the tiers")
    check(w.stop() == 0, "forged: worker exits 0")
    dead = take_all(broker, QUEUE + ".dead")
    check(len(dead) == 1 and dead[0][0].message_id == job_id and dead[0][0].headers.get("x-mw-attempt") == 3,
          f"forged: dead-lettered after 3 attempts, not at once ({dead[0][0].headers if dead else None})")
    check(len(ds.reports_for(job_id)) == 3, f"forged: reported on each of the 3 attempts "
          f"({len(ds.reports_for(job_id))})")
    logs = "\n".join(l.get("msg", "") for l in w.log_lines())
    check("not one this queue's workers signed" in logs, "forged: the forged count is logged")
    check(f"{QUEUE}.retry.1" in logs and f"{QUEUE}.retry.2" in logs, "forged: went through both retry tiers")
    ds.reset()


def test_data_service_gone_for_good(broker, ds, roots):
    ds.reset(default="drop")
    w = Worker(broker, ds, *roots, HTTP_CLIENT_RETRIES=0, MW_RETRY_DELAYS="1").start()
    job_id = publish(broker, {"user_id": 9, "file_info": {"path": "clip.mp4"}})
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="dead-lettered after the last tier")
    check(w.stop() == 0, "gone: worker exits 0")
    dead = take_all(broker, QUEUE + ".dead")
    check(len(dead) == 1 and dead[0][0].message_id == job_id and dead[0][0].headers.get("x-mw-attempt") == 2,
          f"gone: in the DLQ after 2 attempts ({dead[0][0].headers if dead else None})")
    # Counted as what the broker did: one trip through the retry tier, then one dead letter (the last
    # retry verdict found no tier left).
    stopped = [l.get("msg", "") for l in w.log_lines() if l.get("msg", "").startswith("stopped:")]
    check(stopped and "1 retried, 1 dead-lettered" in stopped[-1], f"gone: counted as one retry, one dead letter "
          f"({stopped[-1] if stopped else None})")
    ds.reset()


def stopped_job_process(w, broker, body):
    """Stops every job process, publishes body and waits until a slot has handed it over."""
    pids = w.job_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    job_id = publish(broker, body)
    wait_until(lambda: any("job started" in l.get("msg", "") and l.get("job_id") == job_id for l in w.log_lines()),
               20, what="job handed to a job process")
    return job_id, pids


def test_report_stall_and_events(broker, ds, roots):
    """A Data Service that never answers costs one HTTP_CLIENT_TIMEOUT, then the retry succeeds; the job's
    events reach the events exchange with its ids."""
    conn = broker.connection()
    ch = conn.channel()
    ch.exchange_declare("media.events", "topic", durable=True)
    events_queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(events_queue, "media.events", "job.#")
    ds.stall_s = 3
    ds.script("stall")
    w = Worker(broker, ds, *roots, HTTP_CLIENT_TIMEOUT=1).start()
    job_id = publish(broker, {"user_id": 14, "file_info": {"path": "clip.mp4"}}, request_id="req-stall")
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    time.sleep(0.3)
    check(w.stop() == 0, "stall: worker exits 0")
    check([r["status"] for r in ds.requests] == ["stall", 200], f"stall: {[r['status'] for r in ds.requests]}")
    events = []
    while True:
        method, _, body = ch.basic_get(events_queue, auto_ack=True)
        if method is None:
            break
        events.append((method.routing_key, json.loads(body)))
    conn.close()
    kinds = [k for k, e in events if e.get("job_id") == job_id]
    check(kinds[:1] == ["job.started"] and kinds[-1:] == ["job.completed"], f"events: {kinds}")
    check(all(e.get("request_id") == "req-stall" and e.get("user_id") == 14 for _, e in events),
          "events: carry the request and user ids")
    check(settled(broker), "stall: acked")


def test_process_freed_before_report(broker, ds, roots):
    """Two slots share one job process, which is given back as soon as a job ends: while the Data Service
    sits on the first job's report, the second job runs and is reported. Were the process held until the
    report, the second job could not start before the first report's attempt timed out."""
    ds.stall_s = 4
    ds.script("stall")
    w = Worker(broker, ds, *roots, MW_SLOTS=2, MW_JOB_PROCESSES=1, HTTP_CLIENT_TIMEOUT=2).start()
    first = publish(broker, {"user_id": 16, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 1, 20)
    second = publish(broker, {"user_id": 16, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len([x for x in r if x["status"] == 200]) >= 2, 30)
    stalled = [r for r in ds.requests if r["status"] == "stall"]
    done = {nf.get("job_id"): r["time"] for r in ds.requests if r["status"] == 200
            for nf in [(r["json"] or {}).get("new_file") or {}]}
    check(len(stalled) == 1 and (stalled[0]["json"] or {}).get("new_file", {}).get("job_id") == first,
          f"freed: the first report is the stalled one ({[r['status'] for r in ds.requests]})")
    check(second in done and first in done and done[second] < done[first]
          and done[second] - stalled[0]["time"] < 1.5,
          f"freed: the second job was reported while the first report hung ({done}, stall at "
          f"{stalled[0]['time'] if stalled else None})")
    check(len(w.job_pids()) == 1, f"freed: one job process ({w.job_pids()})")
    check(w.stop() == 0, "freed: worker exits 0")
    check(settled(broker), "freed: both acked")


def test_recycle_and_heartbeat(broker, ds, roots):
    """Job processes are replaced after MW_JOBS_PER_PROCESS jobs; a job that outlasts several heartbeat
    intervals does not cost the broker connection."""
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_JOBS_PER_PROCESS=2, MW_HEARTBEAT=1).start()
    seen = set()
    jobs = []
    for i in range(5):
        jobs.append(publish(broker, {"user_id": 15, "file_info": {"path": "clip.mp4"}}))
        ds.wait_for(lambda r, n=i + 1: len(r) >= n, 20)
        seen.update(w.job_pids())
    check(len(seen) >= 3, f"recycle: 5 jobs at 2 per process used {len(seen)} processes")
    job_id, pids = stopped_job_process(w, broker, {"user_id": 15, "file_info": {"path": "clip.mp4"}})
    time.sleep(4)
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    ds.wait_for(lambda r: len(r) >= 6, 20)
    check(new_files(ds.requests, job_id)[0].get("status") == "processed", "heartbeat: the long job completed")
    logs = w.log_lines()
    check(sum("connected to" in l.get("msg", "") for l in logs) == 1, "heartbeat: the connection survived")
    check(w.stop() == 0, "recycle: worker exits 0")
    check(settled(broker), "recycle: everything acked")


def test_job_process_killed(broker, ds, roots):
    """A SIGKILL the worker did not send (the OOM killer, an operator) is retried once in a fresh process:
    killed once, the job is processed; killed again in its second process, it is reported as JOB_KILLED,
    not as a crash of the input, and acked."""
    ds.reset()
    w = Worker(broker, ds, *roots).start()
    job_id, pids = stopped_job_process(w, broker, {"user_id": 10, "file_info": {"path": "clip.mp4"}})
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    ds.wait_for(lambda r: len(r) >= 1, 20)
    nf = new_files(ds.requests, job_id)
    check(len(nf) == 1 and nf[0].get("status") == "processed", f"killed once: run again and processed ({nf})")
    check(any("killed from outside" in l.get("msg", "") and l.get("job_id") == job_id for l in w.log_lines()),
          "killed once: the log says the job ran again after a kill from outside")
    check(w.alive(), "killed: the worker keeps serving")
    check(not set(w.job_pids()) & set(pids), "killed: job processes replaced")

    # Twice: kill the first process as above, then the fresh one while it transcodes.
    ds.reset()
    job_id, pids = stopped_job_process(w, broker, {"user_id": 10, "file_info": {"path": "long.mp4"}, "operations": [
        {"type": "transcode", "preset": "web", "renditions": [240]}]})
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: any("running the job once more" in l.get("msg", "") and l.get("job_id") == job_id
                           for l in w.log_lines()), 20, what="the job handed to a fresh process")
    # The first process never read the job; the rendition's temporary file shows the second one at work.
    job_dir = os.path.join(roots[1], "10", job_id)
    wait_until(lambda: os.path.isdir(job_dir) and any(".tmp" in n for n in os.listdir(job_dir)), 20,
               what="the transcode under way in the fresh process", interval=0.02)
    running = []
    for pid in set(w.job_pids()) - set(pids):
        running += [c for c in os.listdir("/proc") if c.isdigit() and proc_field(c, "PPid") == str(pid)]
        os.kill(pid, signal.SIGKILL)
    ds.wait_for(lambda r: len(r) >= 1, 30)
    nf = new_files(ds.requests, job_id)
    error = nf[0].get("error", {}) if nf else {}
    check(len(nf) == 1 and nf[0].get("status") == "failed" and error.get("code") == "JOB_KILLED" and
          "did not send" in error.get("message", ""), f"killed twice: reported as killed from outside ({nf})")
    check(not os.path.exists(job_dir), "killed twice: the unfinished transcode left nothing behind")
    check(running, "killed twice: the job ran in a child of the job process")
    # Dead, or a zombie until init reaps it; never still at work.
    check(all((proc_field(c, "State") or "Z").startswith("Z") for c in running),
          f"killed twice: the job died with its job process ({[proc_field(c, 'State') for c in running]})")
    after = [publish(broker, {"user_id": 10, "file_info": {"path": "clip.mp4"}}) for _ in range(3)]
    ds.wait_for(lambda r: len(r) >= 4, 30)
    check(all(new_files(ds.requests, j, 200)[0].get("status") == "processed" for j in after),
          "killed: the next jobs are fine")
    check(len(w.job_pids()) == 2, "killed: job processes replaced")
    check(w.stop() == 0, "killed: worker exits 0")
    check(settled(broker) and queue_depth(broker, QUEUE + ".dead") == 0, "killed: acked, nothing dead-lettered")


def test_job_child_killed(broker, ds, roots):
    """The OOM killer picks the process that holds the memory: the job's own child, not the warm process
    above it. Its socket closes a moment before it can be reaped; that kill is still one from outside, so
    the job runs again in a fresh process and is processed, every time."""
    w = Worker(broker, ds, *roots, MW_SLOTS=1).start()
    for round_ in range(5):
        ds.reset()
        job_id = publish(broker, {"user_id": 12, "file_info": {"path": "long.mp4"}, "operations": [
            {"type": "transcode", "preset": "web", "renditions": [240]}]})
        job_dir = os.path.join(roots[1], "12", job_id)
        wait_until(lambda: os.path.isdir(job_dir) and any(".tmp" in n for n in os.listdir(job_dir)), 30,
                   what="the transcode under way", interval=0.02)
        children = [c for pid in w.job_pids() for c in os.listdir("/proc")
                    if c.isdigit() and proc_field(c, "PPid") == str(pid)]
        check(len(children) == 1, f"round {round_}: one job child at work ({children})")
        for c in children:
            os.kill(int(c), signal.SIGKILL)
        ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 60)
        nf = new_files(ds.requests, job_id)
        check(len(nf) == 1 and nf[0].get("status") == "processed",
              f"round {round_}: the killed child's job ran again and was processed ({nf})")
        check(any("killed from outside" in l.get("msg", "") and l.get("job_id") == job_id for l in w.log_lines()),
              f"round {round_}: the log says the job ran again after a kill from outside")
    check(w.stop() == 0, "child killed: worker exits 0")
    check(settled(broker) and queue_depth(broker, QUEUE + ".dead") == 0,
          "child killed: acked, nothing dead-lettered")


def test_job_deadline(broker, ds, roots):
    ds.reset()
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_JOB_DEADLINE=1).start()
    job_id, _ = stopped_job_process(w, broker, {"user_id": 11, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 1, 20)
    nf = new_files(ds.requests, job_id)
    check(nf and "timeout" in nf[0].get("error", {}).get("message", ""), f"deadline: failed with timeout ({nf})")
    nxt = publish(broker, {"user_id": 11, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 2, 20)
    check(new_files(ds.requests, nxt)[0].get("status") == "processed", "deadline: the next job is fine")
    check(w.stop() == 0, "deadline: worker exits 0")


def test_memory_cap(broker, ds, roots):
    """A cap too low for the libraries' mapping is refused (jobs lost, then dead-lettered); a cap above the
    baseline fails a decoding (thumbnail) job at the cap and the next job is fine. Skipped under
    AddressSanitizer, which does not apply RLIMIT_AS."""
    ds.reset()
    probe_w = Worker(broker, ds, *roots, MW_SLOTS=1).start()
    pid = probe_w.job_pids()[0]
    baseline_kb = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmSize")][0].split()[1])
    probe_w.stop()
    low = Worker(broker, ds, *roots, MW_SLOTS=1, MW_JOB_MEMORY_MB=64).start(ready="serving")
    if any("not applied under AddressSanitizer" in l.get("msg", "") for l in low.log_lines()):
        low.stop()
        print("memory cap: skipped (AddressSanitizer build: RLIMIT_AS is not applied)", file=sys.stderr)
        return
    wait_until(lambda: any("MW_JOB_MEMORY_MB=64 is too low" in l.get("msg", "") for l in low.log_lines()), 10,
               what="too-low memory cap explained")
    check(low.alive(), "memory: a cap below the libraries' mapping is refused, the worker stays up")
    # No job process can take a job: a transient failure, retried through every tier, then dead-lettered.
    lost = publish(broker, {"user_id": 12, "file_info": {"path": "clip.mp4"}})
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="job dead-lettered after the tiers")
    check(low.stop() == 0, "memory: worker with a too-low cap exits 0")
    dead = take_all(broker, QUEUE + ".dead")
    check(dead[0][0].message_id == lost and dead[0][0].headers.get("x-mw-attempt") == 3,
          f"lost: dead-lettered after 3 attempts ({dead[0][0].headers})")
    nf = new_files(ds.requests, lost)
    check(len(nf) == 1 and nf[0].get("error", {}).get("code") == "JOB_LOST", f"lost: reported failed once ({nf})")
    logs = "\n".join(l.get("msg", "") for l in low.log_lines())
    check(f"{QUEUE}.retry.1" in logs and f"{QUEUE}.retry.2" in logs, "lost: went through both retry tiers")
    ds.reset()
    cap_mb = baseline_kb // 1024 + 40
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_JOB_MEMORY_MB=cap_mb).start()
    big = publish(broker, {"user_id": 12, "file_info": {"path": "big.ts"}, "operations": [{"type": "thumbnail"}]})
    ds.wait_for(lambda r: len(r) >= 1, 30)
    nf = new_files(ds.requests, big)[0]
    check(nf.get("error", {}).get("code") != "UNSUPPORTED_OP",
          "memory: the thumbnail operation is in the build (it always is)")
    check(nf.get("status") == "failed" and nf.get("error", {}).get("code") in ("JOB_MEMORY", "JOB_CRASHED"),
          f"memory: failed at the cap ({nf.get('error')})")
    nxt = publish(broker, {"user_id": 12, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 2, 30)
    check(new_files(ds.requests, nxt)[0].get("status") == "processed", "memory: the next job is fine")
    check(w.stop() == 0, "memory: worker exits 0")


def test_sigterm_during_job(broker, ds, roots):
    ds.reset()
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_SHUTDOWN_GRACE=1).start()
    job_id, _ = stopped_job_process(w, broker, {"user_id": 13, "file_info": {"path": "clip.mp4"}})
    started = time.monotonic()
    code = w.stop(timeout=30)
    check(code == 0, f"sigterm: exit status {code}")
    check(time.monotonic() - started < 10, "sigterm: stopped soon after the grace")
    check(not ds.reports_for(job_id), "sigterm: the unfinished job was not reported")
    check(queue_depth(broker, QUEUE) == 1, "sigterm: the unfinished job is back in the queue")
    w2 = Worker(broker, ds, *roots, MW_SLOTS=1).start()
    ds.wait_for(lambda r: len(r) >= 1, 30)
    check(new_files(ds.requests, job_id)[0].get("status") == "processed", "sigterm: requeued job processed later")
    check(w2.stop() == 0, "sigterm: second worker exits 0")


def test_sigterm_during_download(broker, ds, roots):
    """SIGTERM stops a download in progress at once: the job would not start after it, so the message goes
    back to the work queue without counting as a failed attempt, and the worker does not sit out its grace."""
    server = origin.start(os.path.join(roots[0], "clip.mp4"))
    server.RequestHandlerClass.stall_seconds = 60
    url = f"http://127.0.0.1:{server.server_address[1]}/stall"
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_SHUTDOWN_GRACE=30, MW_URL_ALLOW_NETWORKS="127.0.0.1/32",
               MW_URL_TIMEOUT=120).start()
    job_id = publish(broker, {"user_id": 17, "file_info": {"url": url}})
    wait_until(lambda: any("job started" in l.get("msg", "") and l.get("job_id") == job_id for l in w.log_lines()),
               20, what="download under way")
    time.sleep(0.5)
    started = time.monotonic()
    code = w.stop(timeout=60)
    took = time.monotonic() - started
    check(code == 0, f"download: exit status {code}")
    check(took < 5, f"download: stopped in {took:.1f} s, not after the 30 s grace")
    check(not ds.reports_for(job_id), "download: the job was not reported")
    check(queue_depth(broker, QUEUE) == 1 and queue_depth(broker, QUEUE + ".retry.1") == 0,
          "download: the message is back in the work queue, not in a retry tier")
    take_all(broker, QUEUE)
    server.shutdown()


def test_sigterm_job_finishes_in_grace(broker, ds, roots):
    """A job that finishes within MW_SHUTDOWN_GRACE is reported and acked before the worker exits."""
    w = Worker(broker, ds, *roots, MW_SLOTS=1, MW_SHUTDOWN_GRACE=20).start()
    job_id, pids = stopped_job_process(w, broker, {"user_id": 16, "file_info": {"path": "clip.mp4"}})
    w.signal(signal.SIGTERM)
    wait_until(lambda: any("SIGTERM received" in l.get("msg", "") for l in w.log_lines()), 10, what="SIGTERM seen")
    time.sleep(0.5)
    check(w.alive(), "grace: the worker waits for the job in flight")
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    code = w.wait(timeout=30)
    check(code == 0, f"grace: exit status {code}")
    nf = new_files(ds.requests, job_id, 200)
    check(len(nf) == 1 and nf[0].get("status") == "processed", "grace: the job completed and was reported")
    check(settled(broker), "grace: and acked (nothing requeued)")


def main():
    work = mwtest.fresh_dir("worker")
    input_root = os.path.join(work, "in")
    output_root = os.path.join(work, "out")
    os.makedirs(input_root)
    mwtest.worker_clip(os.path.join(input_root, "clip.mp4"))
    # A transcode of this takes a few seconds: long enough to kill its job process in the middle.
    os.link(mwtest.media("worker-long40.mp4", ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=40",
                                             "-f", "lavfi", "-i", "sine=duration=40", "-c:v", "libx264",
                                             "-preset", "ultrafast", "-c:a", "aac", "-pix_fmt", "yuv420p"]),
            os.path.join(input_root, "long.mp4"))
    os.link(mwtest.media("worker-8k.ts", ["-f", "lavfi", "-i", "testsrc2=size=7680x4320:rate=1:duration=1",
                                          "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast",
                                          "-pix_fmt", "yuv420p"]),
            os.path.join(input_root, "big.ts"))
    roots = (input_root, output_root)
    tests = [test_seed_message, test_submit_and_isolation_none, test_run_with_report, test_invalid_messages, test_report_503_then_200,
             test_committed_result_reported_again, test_failed_job_leaves_nothing, test_report_404_and_400,
             test_report_answer_classes, test_report_tls_failure,
             test_data_service_down, test_forged_attempts, test_data_service_gone_for_good, test_report_stall_and_events,
             test_process_freed_before_report, test_recycle_and_heartbeat, test_job_process_killed, test_job_child_killed, test_job_deadline,
             test_memory_cap, test_sigterm_during_job, test_sigterm_during_download,
             test_sigterm_job_finishes_in_grace]
    only = sys.argv[1:]
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        try:
            for test in tests:
                if only and test.__name__ not in only:
                    continue
                ds.reset()
                started = time.monotonic()
                try:
                    test(broker, ds, roots)
                except Exception as e:  # a timeout in one scenario must not hide the others
                    check(False, f"{test.__name__}: {type(e).__name__}: {e}")
                print(f"{test.__name__}: {time.monotonic() - started:.1f} s", file=sys.stderr)
                take_all(broker, QUEUE + ".dead")
        finally:
            ds.stop()
    mwtest.finish()


if __name__ == "__main__":
    main()
