"""Chaos soak: mixed jobs through two `mediaworker serve` workers while job processes and whole workers are
SIGKILLed, RabbitMQ restarts, and the Data Service fails (500/503) and stalls.

At the end every valid job has a successful report (repeats only as idempotent copies with the same
Idempotency-Key), or a failed one saying its job process was killed by the test; every invalid or
hostile job is failed or dead-lettered; the queues are empty once the workers left (so nothing was left
unacknowledged); no temporary or partial file is left; no sanitizer report in any log. The counts are
printed.

Bounded for CI (MW_CHAOS_JOBS=300 over MW_CHAOS_SECONDS=40 by default); longer by the same variables,
e.g. MW_CHAOS_JOBS=2000 MW_CHAOS_SECONDS=600.
"""
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

import http.server

import data_service
import mwtest
import rabbitmq
from mwtest import check, media
from worker import Worker, publish, queue_depth, take_all

QUEUE = "media.process"
TIERS = (QUEUE + ".retry.1", QUEUE + ".retry.2")
JOBS = int(os.environ.get("MW_CHAOS_JOBS", "300"))
SECONDS = float(os.environ.get("MW_CHAOS_SECONDS", "40"))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")
WORKER_ENV = {"MW_URL_ALLOW_NETWORKS": "127.0.0.1/32", "MW_SLOTS": 2, "MW_RETRY_DELAYS": "1,2", "HTTP_CLIENT_TIMEOUT": 1, "HTTP_CLIENT_RETRIES": 2,
              "MW_SHUTDOWN_GRACE": 10, "MW_HEARTBEAT": 5, "MW_LOG_LEVEL": "info"}

# kind -> (weight, body builder taking the user id); "valid" kinds must end processed.
KINDS = {
    "probe": (45, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "probe"}]}),
    "thumbnail": (20, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"},
                                 "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]}),
    "transcode": (8, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"},
                                "operations": [{"type": "transcode", "preset": "web", "renditions": [120]}]}),
    # Downloaded by the slot from a local origin that trickles the clip over about half a second, so
    # killed workers meet downloads in flight.
    "url": (6, lambda u: {"user_id": u, "file_info": {"url": f"{Origin.url}/clip.mp4"},
                          "operations": [{"type": "probe"}]}),
    "invalid": (12, lambda u: random.choice([
        b"{not json",
        {"file_info": {"path": "clip.mp4"}},
        {"user_id": u, "file_info": {"path": "../../etc/passwd"}},
        {"user_id": u, "file_info": {"path": "concat:clip.mp4|clip.mp4"}},
        {"user_id": u, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "explode"}]}])),
    "hostile": (15, lambda u: {"user_id": u, "file_info": {"path": random.choice(
        ["truncated.mp4", "zero-bytes.mp4", "random-bytes.mp4", "header-only.mp4", "ansi-text.mp4",
         "playlist.mp4", "ffconcat.mp4"])}, "operations": [{"type": "probe"}, {"type": "thumbnail"}]}),
}
VALID = ("probe", "thumbnail", "transcode", "url")


class Origin(http.server.BaseHTTPRequestHandler):
    clip = b""
    url = ""

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.clip)))
            self.end_headers()
            for i in range(0, len(self.clip), len(self.clip) // 10 + 1):
                self.wfile.write(self.clip[i:i + len(self.clip) // 10 + 1])
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Soak:
    def __init__(self, broker, ds, roots):
        self.broker, self.ds, self.roots = broker, ds, roots
        self.workers = [self.new_worker(i) for i in range(2)]
        self.all_workers = list(self.workers)
        self.jobs = {}  # job id -> kind
        self.bodies = {}
        self.actions = {"job process killed": 0, "worker killed": 0, "broker restarted": 0,
                        "data service failing": 0, "data service stalled": 0, "data service down": 0}
        self.stop_chaos = threading.Event()
        self.lock = threading.Lock()

    def new_worker(self, i):
        """Worker i; its restarts keep its scratch directory, as a restarted container keeps its pod's."""
        return Worker(self.broker, self.ds, *self.roots, name=f"chaos{i}",
                      MW_SCRATCH_DIR=os.path.join(self.roots[1], f".scratch-{i}"), **WORKER_ENV)

    def publish_with_retry(self, body, job_id):
        """The publisher keeps trying through broker restarts; a lost confirm may duplicate the message,
        which the worker must take as the same job (same message id)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                return publish(self.broker, body, message_id=job_id)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def publisher(self):
        rng = random.Random(7)
        kinds = [k for k, (w, _) in KINDS.items() for _ in range(w)]
        interval = SECONDS * 0.8 / JOBS
        for n in range(JOBS):
            kind = rng.choice(kinds)
            body = KINDS[kind][1](100 + n % 7)
            job_id = f"chaos-{n:05d}-{kind}"
            with self.lock:
                self.jobs[job_id] = kind
                self.bodies[job_id] = body
            self.publish_with_retry(body, job_id)
            time.sleep(interval)

    def kill_job_process(self, rng):
        """SIGKILLs a job process, preferring one that is busy (its CPU time moves): idle ones are only
        replaced, busy ones fail their job and may leave temporaries behind."""
        def cpu(pid):
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                return int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                return None
        pids = []
        for _ in range(20):
            pids = [p for w in self.workers if w.alive() for p in w.job_pids()]
            before = {p: cpu(p) for p in pids}
            time.sleep(0.03)
            busy = [p for p in pids if before[p] is not None and (cpu(p) or 0) > before[p]]
            if busy:
                pids = busy
                break
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                self.actions["job process killed"] += 1
            except ProcessLookupError:
                pass

    def kill_worker(self, rng):
        """SIGKILLs a worker, preferring one with a download in flight (its scratch directory in use)."""
        i = rng.randrange(len(self.workers))
        for _ in range(40):
            busy = [k for k in range(len(self.workers))
                    if os.listdir(os.path.join(self.roots[1], f".scratch-{k}"))]
            if busy:
                i = rng.choice(busy)
                break
            time.sleep(0.025)
        self.workers[i].proc.kill()
        self.workers[i].wait()
        self.workers[i] = self.new_worker(i)
        self.workers[i].start(ready=None)
        self.all_workers.append(self.workers[i])
        self.actions["worker killed"] += 1

    def chaos(self):
        rng = random.Random(11)
        started = time.monotonic()
        step = 0
        while not self.stop_chaos.is_set() and time.monotonic() - started < SECONDS:
            step += 1
            # Broker restarts are the slowest disturbance (seconds each): one about every 25 s of soak.
            if step % 12 == 6:
                self.broker.restart()
                self.actions["broker restarted"] += 1
            else:
                action = step % 5
                if action == 0:
                    self.kill_worker(rng)
                elif action == 1:
                    self.ds.script(500, 503, 503)
                    self.actions["data service failing"] += 1
                elif action == 2:
                    self.ds.script("stall")
                    self.actions["data service stalled"] += 1
                elif action == 3:
                    self.ds.default = 503
                    time.sleep(1.5)
                    self.ds.default = 200
                    self.actions["data service down"] += 1
                for _ in range(2):
                    self.kill_job_process(rng)
            time.sleep(2)


def reports(ds):
    """job id -> list of (HTTP status, new_file, Idempotency-Key) in arrival order."""
    out = {}
    for r in ds.requests:
        nf = (r["json"] or {}).get("new_file") or {}
        if nf.get("job_id"):
            out.setdefault(nf["job_id"], []).append((r["status"], nf, r["headers"].get("Idempotency-Key")))
    return out


def outcome(kind, attempts, dead_ids, job_id):
    """'ok', 'killed' (failed because the test killed its job process), 'failed', 'dead' or None (not yet)."""
    accepted = [nf for status, nf, _ in attempts if status == 200]
    if kind in VALID:
        if any(nf.get("status") == "processed" for nf in accepted):
            return "ok"
        if any((nf.get("error") or {}).get("code") == "JOB_CRASHED" and
               "SIGKILL" in (nf.get("error") or {}).get("message", "") for nf in accepted):
            return "killed"
        return "dead" if job_id in dead_ids else ("failed" if accepted else None)
    if job_id in dead_ids:
        return "dead"
    return "failed" if any(nf.get("status") == "failed" for nf in accepted) else None



def main():
    work = mwtest.fresh_dir("chaos")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    os.makedirs(input_root)
    os.link(media("chaos-clip.mp4", ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1",
                                     "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]),
            os.path.join(input_root, "clip.mp4"))
    for sub in ("hostile", "broken"):
        for name in os.listdir(os.path.join(mwtest.FIXTURES, sub)):
            shutil.copy(os.path.join(mwtest.FIXTURES, sub, name), os.path.join(input_root, name))
    Origin.clip = open(os.path.join(input_root, "clip.mp4"), "rb").read()
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    Origin.url = f"http://127.0.0.1:{origin.server_address[1]}"
    started = time.monotonic()
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        ds.stall_s = 2
        soak = Soak(broker, ds, (input_root, output_root))
        dead = []
        try:
            for w in soak.workers:
                w.start()
            # Workers are (re)started only by this thread: their PR_SET_PDEATHSIG follows the thread that
            # started them.
            publisher = threading.Thread(target=soak.publisher, daemon=True)
            publisher.start()
            soak.chaos()
            publisher.join()
            ds.clear_script()
            ds.default = 200
            for i, w in enumerate(soak.workers):
                if not w.alive():
                    check(False, f"worker {i} exited by itself: {w.proc.returncode}")
                    soak.workers[i] = soak.new_worker(i).start()
                    soak.all_workers.append(soak.workers[i])
            # Settle: every job has its outcome and the work and retry queues are empty.
            settle_until = time.monotonic() + 120
            while time.monotonic() < settle_until:
                dead += take_all(broker, QUEUE + ".dead")
                dead_ids = {p.message_id for p, _ in dead}
                got = reports(ds)
                pending = [j for j, k in soak.jobs.items() if outcome(k, got.get(j, []), dead_ids, j) is None]
                if not pending and all(queue_depth(broker, q) == 0 for q in (QUEUE,) + TIERS):
                    break
                time.sleep(1)
            codes = [w.stop() for w in soak.workers]
            check(all(c == 0 for c in codes), f"workers exit 0 on SIGTERM: {codes}")
            # Unacknowledged messages go back to their queue when the consumer leaves.
            depths = {q: queue_depth(broker, q) for q in (QUEUE,) + TIERS}
            check(all(d == 0 for d in depths.values()), f"queues empty, nothing left unacked: {depths}")
            dead += take_all(broker, QUEUE + ".dead")
        finally:
            soak.stop_chaos.set()
            ds.stop()
            origin.shutdown()
    dead_ids = {}
    for props, _ in dead:
        dead_ids[props.message_id] = dead_ids.get(props.message_id, 0) + 1
    got = reports(ds)
    counts = {}
    repeats = 0
    for job_id, kind in sorted(soak.jobs.items()):
        attempts = got.get(job_id, [])
        result = outcome(kind, attempts, dead_ids, job_id)
        counts[f"{kind}:{result}"] = counts.get(f"{kind}:{result}", 0) + 1
        processed = [a for a in attempts if a[0] == 200 and a[1].get("status") == "processed"]
        repeats += max(0, len(processed) - 1)
        check(all(key and key.split(":", 1)[1] == job_id for _, _, key in attempts),
              f"{job_id}: a report without its Idempotency-Key (<user>:<job>)")
        if kind in VALID:
            check(result in ("ok", "killed"), f"{job_id} ({kind}): ended {result}: "
                  f"{[(s, nf.get('status'), nf.get('error')) for s, nf, _ in attempts]}")
            for _, nf, _ in processed:
                for out in nf.get("outputs") or []:
                    path = os.path.join(output_root, out["path"])
                    check(os.path.isfile(path) and os.path.getsize(path) > 0, f"{job_id}: output {path} missing")
        else:
            check(result in ("failed", "dead"), f"{job_id} ({kind}): ended {result}: {soak.bodies[job_id]}")
    left = mwtest.leftovers(output_root)
    check(not left, f"temporary or partial files left: {left[:10]}")
    for i in range(2):
        scratch = os.path.join(output_root, f".scratch-{i}")
        check(not os.path.isdir(scratch) or not os.listdir(scratch),
              f"scratch directory {scratch} left non-empty: {os.listdir(scratch)}")
    for w in soak.all_workers:
        bad = [l.get("raw", "") for l in w.log_lines() if any(m in l.get("raw", "") for m in SANITIZER_MARKS)]
        check(not bad, f"sanitizer report in {w.log_path}: {bad[:3]}")
    summary = {"jobs": len(soak.jobs), "seconds": round(time.monotonic() - started, 1), "outcomes": counts,
               "idempotent_repeats": repeats, "dead_lettered": sum(dead_ids.values()),
               "dead_letter_duplicates": sum(n - 1 for n in dead_ids.values()),
               "reports": sum(len(a) for a in got.values()), "chaos": soak.actions,
               "workers_started": len(soak.all_workers), "leftover_files": len(left)}
    print("chaos summary: " + json.dumps(summary, sort_keys=True))
    mwtest.finish()


if __name__ == "__main__":
    main()
