"""Soak: a few hundred mixed jobs through two `mediaworker serve` workers under every fault at once, then a
reconciliation of what became of each message.

While jobs are published (probe, thumbnail, storyboard, a small transcode, URL inputs, invalid messages,
broken and hostile files), the test SIGKILLs job processes (the warm process and, as the OOM killer would,
the job's own child) and whole workers, restarts RabbitMQ, deletes a retry tier and the dead-letter queue
under the running workers, makes the Data Service answer in every class the delivery policy knows (3xx,
400, 401, 403, 404, 409, 410, 413, 422, 429, 500, 502, 503 with Retry-After in seconds and as a date, a
stall past the client timeout, a reset, bytes that are not HTTP, all of it down for a while) and fills the
output disk for a few seconds.

Then every message must have ended one known way: processed (a report the Data Service accepted),
failed (reported), dead-lettered (with the reason), or dropped because the Data Service said the user is
gone. The summary line counts them, and three counts must be 0: lost messages (none of those), orphan
files (anything in the output tree that no committed result accounts for), and jobs reported twice with
different outcomes. Each valid job that did not end processed must be explained by a fault the test
caused. Queues are empty once the workers left (nothing unacked), scratch directories are empty, and no
log has a sanitizer report.

Bounded for CI (MW_SOAK_JOBS=300 over MW_SOAK_SECONDS=48 by default); longer by the same variables.
"""
import email.utils
import errno
import json
import os
import random
import shutil
import signal
import subprocess
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
DEAD = QUEUE + ".dead"
JOBS = int(os.environ.get("MW_SOAK_JOBS", "300"))
SECONDS = float(os.environ.get("MW_SOAK_SECONDS", "48"))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")
WORKER_ENV = {"MW_URL_ALLOW_NETWORKS": "127.0.0.1/32", "MW_SLOTS": 2, "MW_RETRY_DELAYS": "1,2",
              "HTTP_CLIENT_TIMEOUT": 1, "HTTP_CLIENT_RETRIES": 2, "MW_SHUTDOWN_GRACE": 10, "MW_HEARTBEAT": 5,
              "MW_LOG_LEVEL": "info"}
FILLER = ".soak-filler"

# kind -> (weight, body builder taking the user id); "valid" kinds must end processed unless a fault explains it.
KINDS = {
    "probe": (35, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "probe"}]}),
    "thumbnail": (15, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"},
                                 "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]}),
    "storyboard": (10, lambda u: {"user_id": u, "file_info": {"path": "clip.mp4"},
                                  "operations": [{"type": "storyboard", "interval": 0.25, "tile_width": 32}]}),
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
    "hostile": (14, lambda u: {"user_id": u, "file_info": {"path": random.choice(
        ["truncated.mp4", "zero-bytes.mp4", "random-bytes.mp4", "header-only.mp4", "ansi-text.mp4",
         "playlist.mp4", "ffconcat.mp4"])}, "operations": [{"type": "probe"}, {"type": "thumbnail"}]}),
}
VALID = ("probe", "thumbnail", "storyboard", "transcode", "url")


def retry_after_date(seconds):
    return lambda: ("retry_after", 503, email.utils.formatdate(time.time() + seconds, usegmt=True))


# Every answer class of the delivery policy, in turn: (name, answers the Data Service gives next).
DS_FAULTS = [
    ("500 then 503", lambda: (500, 503)), ("redirect 301", lambda: (301,)), ("400", lambda: (400,)),
    ("503 Retry-After 1", lambda: (("retry_after", 503, "1"),)), ("401", lambda: (401,)), ("404", lambda: (404,)),
    ("429", lambda: (429,)), ("403", lambda: (403,)), ("409", lambda: (409,)), ("410", lambda: (410,)),
    ("502", lambda: (502,)), ("413", lambda: (413,)), ("stall", lambda: ("stall",)), ("422", lambda: (422,)),
    ("reset", lambda: ("drop",)), ("503 Retry-After date", lambda: (retry_after_date(1)(),)),
    ("not HTTP", lambda: ("garbage",)),
]


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


def cpu_ticks(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


class Soak:
    def __init__(self, broker, ds, roots, disk_full_possible):
        self.broker, self.ds, self.roots = broker, ds, roots
        self.disk_full_possible = disk_full_possible
        self.workers = [self.new_worker(i) for i in range(2)]
        self.all_workers = list(self.workers)
        self.jobs = {}  # job id -> kind
        self.bodies = {}
        self.faults = {"job process killed": 0, "job child killed": 0, "worker killed": 0, "broker restarted": 0,
                       "tier queue deleted": 0, "dead-letter queue deleted": 0, "data service down": 0,
                       "disk full": 0}
        self.ds_faults = {}
        self.dead = []  # (properties, body) of every dead letter taken off the queue
        self.stop_faults = threading.Event()
        self.lock = threading.Lock()

    def new_worker(self, i):
        """Worker i; its restarts keep its scratch directory, as a restarted container keeps its pod's."""
        return Worker(self.broker, self.ds, *self.roots, name=f"soak{i}",
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
            job_id = f"soak-{n:05d}-{kind}"
            with self.lock:
                self.jobs[job_id] = kind
                self.bodies[job_id] = body
            self.publish_with_retry(body, job_id)
            time.sleep(interval)

    def busy_job_processes(self):
        """Job processes whose CPU time moves (busy ones fail their job; idle ones are only replaced)."""
        pids = []
        for _ in range(20):
            pids = [p for w in self.workers if w.alive() for p in w.job_pids()]
            before = {p: cpu_ticks(p) for p in pids}
            for p in pids:
                before.update({c: cpu_ticks(c) for c in children_of(p)})
            time.sleep(0.03)
            busy = [p for p in pids if any((cpu_ticks(q) or 0) > (before.get(q) or 0) for q in [p] + children_of(p))]
            if busy:
                return busy
        return pids

    def kill_job_process(self, rng):
        """SIGKILLs a busy job process: it fails its job, which runs once more in a fresh process."""
        pids = self.busy_job_processes()
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                self.faults["job process killed"] += 1
            except ProcessLookupError:
                pass

    def kill_job_child(self, rng):
        """SIGKILLs the child of a job process that runs a job: the process the OOM killer would pick, the
        one that holds the job's memory. Each lives only as long as its job, so the first one seen goes."""
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            children = [c for w in self.workers if w.alive() for p in w.job_pids() for c in children_of(p)]
            if children:
                try:
                    os.kill(rng.choice(children), signal.SIGKILL)
                    self.faults["job child killed"] += 1
                    return
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

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
        self.faults["worker killed"] += 1

    def delete_queue(self, queue, fault):
        """Deletes queue under the running workers once it is empty: copies the workers publish to it
        afterwards must not vanish. (A queue deleted with messages in it loses them by the operator's hand,
        not the worker's.) The dead letters are collected first, as an operator would drain them."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if queue == DEAD:
                self.dead += take_all(self.broker, DEAD)
            try:
                conn = self.broker.connection()
                try:
                    conn.channel().queue_delete(queue, if_empty=True)
                    self.faults[fault] += 1
                    return
                finally:
                    if conn.is_open:
                        conn.close()
            except Exception:
                time.sleep(0.1)

    def fill_disk(self, hold_s):
        """Fills the output file system (a tmpfs of its own) for hold_s, then frees it."""
        path = os.path.join(self.roots[1], FILLER)
        chunk = b"\0" * (1 << 20)
        with open(path, "wb") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
        self.faults["disk full"] += 1
        time.sleep(hold_s)
        os.unlink(path)

    def run_faults(self):
        rng = random.Random(11)
        started = time.monotonic()
        step = 0
        while not self.stop_faults.is_set() and time.monotonic() - started < SECONDS:
            step += 1
            # Two answer classes a step, so that a bounded run meets all of them.
            for k in (2 * step - 2, 2 * step - 1):
                name, answers = DS_FAULTS[k % len(DS_FAULTS)]
                self.ds.script(*answers())
                self.ds_faults[name] = self.ds_faults.get(name, 0) + 1
            # Broker restarts are the slowest disturbance (seconds each): two in a run.
            if step in (6, 14):
                self.broker.restart()
                self.faults["broker restarted"] += 1
            elif step == 9:
                self.delete_queue(TIERS[0], "tier queue deleted")
            elif step == 13:
                self.delete_queue(DEAD, "dead-letter queue deleted")
            elif step == 11 and self.disk_full_possible:
                self.fill_disk(2.5)
            elif step % 5 == 0:
                self.kill_worker(rng)
            elif step % 7 == 3:
                self.ds.default = 503
                time.sleep(1.5)
                self.ds.default = 200
                self.faults["data service down"] += 1
            self.kill_job_process(rng)
            self.kill_job_child(rng)
            time.sleep(2)


def reports(ds):
    """job id -> list of (HTTP status or scripted action, new_file, Idempotency-Key) in arrival order."""
    out = {}
    for r in ds.requests:
        nf = (r["json"] or {}).get("new_file") or {}
        if nf.get("job_id"):
            out.setdefault(nf["job_id"], []).append((r["status"], nf, r["headers"].get("Idempotency-Key")))
    return out


def accepted(attempts):
    return [nf for status, nf, _ in attempts if isinstance(status, int) and 200 <= status < 300]


def ending(attempts, dead_reasons):
    """How a message ended: 'processed', 'failed', 'dead', 'user gone', or None (lost, so far)."""
    ok = accepted(attempts)
    if any(nf.get("status") == "processed" for nf in ok):
        return "processed"
    if dead_reasons:
        return "dead"
    if ok:
        return "failed"
    if any(status in (404, 410) for status, _, _ in attempts):
        return "user gone"
    return None


def explained(kind, end, attempts, dead_reasons, faults):
    """Whether a job ended as a fault of the test's making would have it end; a reason string if not."""
    errors = [(nf.get("error") or {}).get("code") for nf in accepted(attempts) if nf.get("status") == "failed"]
    if kind not in VALID:
        if end in ("failed", "user gone"):
            return None
        if end == "dead":
            return None if dead_reasons[0] else "dead-lettered without x-mw-error"
        return f"an invalid or hostile message ended {end}"
    if end in ("processed", "user gone"):
        return None
    if end == "failed" and errors and all(e == "JOB_KILLED" for e in errors):
        return None if faults["job process killed"] + faults["job child killed"] else "JOB_KILLED, nobody killed"
    if end == "dead":
        reason = dead_reasons[-1] or ""
        if reason.startswith("data service"):
            return None
        if "ENOSPC" in reason or "No space" in reason:
            return None if faults["disk full"] else "ENOSPC without a full disk"
        return f"dead-lettered: {reason!r}"
    return f"ended {end}: {errors}"


def output_tree(output_root):
    """job id -> set of file names in its folder, and files outside any job folder."""
    folders, stray = {}, []
    for user in os.listdir(output_root):
        path = os.path.join(output_root, user)
        if user.startswith(".scratch-") or user == FILLER:
            continue
        if not os.path.isdir(path):
            stray.append(path)
            continue
        for job in os.listdir(path):
            job_path = os.path.join(path, job)
            if os.path.isdir(job_path):
                folders[job] = (job_path, set(os.listdir(job_path)))
            else:
                stray.append(job_path)
    return folders, stray


def committed_outputs(job_path):
    """The file names a valid .mw-result.json in job_path lists, or None."""
    try:
        with open(os.path.join(job_path, ".mw-result.json")) as f:
            report = json.load(f)["report"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if report.get("status") != "processed":
        return None
    return {os.path.basename(o["path"]) for o in report.get("outputs") or []}


def main():
    work = mwtest.fresh_dir("soak")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    os.makedirs(input_root)
    os.makedirs(output_root)
    # The output disk is a tmpfs of its own, so that the test can fill it without filling the machine's.
    # Where mounting is not allowed (an unprivileged container) the disk-full fault is left out, and said so.
    disk_full_possible = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", output_root],
                                        capture_output=True).returncode == 0
    if not disk_full_possible:
        print("soak: cannot mount a tmpfs for the output root; the disk-full fault is left out", file=sys.stderr)
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
    try:
        with rabbitmq.RabbitMQ(work) as broker:
            ds = data_service.DataService().start()
            ds.stall_s = 2
            soak = Soak(broker, ds, (input_root, output_root), disk_full_possible)
            try:
                run(soak, broker, ds)
            finally:
                soak.stop_faults.set()
                ds.stop()
                origin.shutdown()
        reconcile(soak, ds, output_root, started)
    finally:
        if disk_full_possible:
            subprocess.run(["umount", "-l", output_root])
    mwtest.finish()


def run(soak, broker, ds):
    for w in soak.workers:
        w.start()
    # Workers are (re)started only by this thread: their PR_SET_PDEATHSIG follows the thread that started them.
    publisher = threading.Thread(target=soak.publisher, daemon=True)
    publisher.start()
    soak.run_faults()
    publisher.join()
    ds.clear_script()
    ds.default = 200
    for i, w in enumerate(soak.workers):
        if not w.alive():
            check(False, f"worker {i} exited by itself: {w.proc.returncode}")
            soak.workers[i] = soak.new_worker(i).start()
            soak.all_workers.append(soak.workers[i])
    # Settle: every message has ended somehow and the work and retry queues are empty.
    settle_until = time.monotonic() + 120
    while time.monotonic() < settle_until:
        soak.dead += take_all(broker, DEAD)
        dead_ids = {p.message_id for p, _ in soak.dead}
        got = reports(ds)
        pending = [j for j in soak.jobs if ending(got.get(j, []), [True] if j in dead_ids else []) is None]
        if not pending and all(not queue_depth(broker, q) for q in (QUEUE,) + TIERS):
            break
        time.sleep(1)
    codes = [w.stop() for w in soak.workers]
    check(all(c == 0 for c in codes), f"workers exit 0 on SIGTERM: {codes}")
    # Unacknowledged messages go back to their queue when the consumer leaves.
    depths = {q: queue_depth(broker, q) for q in (QUEUE,) + TIERS}
    check(all(not d for d in depths.values()), f"queues empty, nothing left unacked: {depths}")
    soak.dead += take_all(broker, DEAD)


def reconcile(soak, ds, output_root, started):
    dead_reasons = {}
    for props, _ in soak.dead:
        reason = (props.headers or {}).get("x-mw-error")
        dead_reasons.setdefault(props.message_id, []).append(
            reason.decode() if isinstance(reason, bytes) else reason)
    got = reports(ds)
    folders, stray = output_tree(output_root)
    counts = {"processed": 0, "failed": 0, "dead": 0, "user gone": 0, "lost": 0}
    by_kind = {}
    different, repeats, kept, orphans = [], 0, 0, list(stray)
    for job_id, kind in sorted(soak.jobs.items()):
        attempts = got.get(job_id, [])
        end = ending(attempts, dead_reasons.get(job_id, []))
        counts[end or "lost"] += 1
        by_kind[f"{kind}:{end or 'lost'}"] = by_kind.get(f"{kind}:{end or 'lost'}", 0) + 1
        check(end is not None, f"{job_id} ({kind}) lost: no accepted report, no dead letter, no user-gone answer; "
              f"answers {[(s, nf.get('status')) for s, nf, _ in attempts]}")
        if end is None:
            continue
        why = explained(kind, end, attempts, dead_reasons.get(job_id, []), soak.faults)
        check(why is None, f"{job_id} ({kind}) unexplained: {why}; "
              f"{[(s, nf.get('status'), nf.get('error')) for s, nf, _ in attempts]}")
        check(all(key and key.split(":", 1)[1] == job_id for _, _, key in attempts),
              f"{job_id}: a report without its Idempotency-Key (<user>:<job>)")
        ok = accepted(attempts)
        repeats += max(0, len(ok) - 1)
        outcomes = {(nf.get("status"), json.dumps(sorted(o["path"] for o in nf.get("outputs") or [])))
                    for nf in ok}
        if len(outcomes) > 1:
            different.append((job_id, sorted(outcomes)))
        # The output tree: a processed job's folder holds what its report lists; a result committed but
        # not accepted (the report refused, the user gone) is kept for a redelivery to report; anything else
        # in a folder is an orphan.
        folder = folders.pop(job_id, None)
        if folder is None:
            if end == "processed" and any(nf.get("outputs") for nf in ok):
                check(False, f"{job_id}: its reported outputs are missing")
            continue
        job_path, names = folder
        listed = committed_outputs(job_path)
        if end == "processed":
            reported = {os.path.basename(o["path"]) for nf in ok for o in nf.get("outputs") or []}
            check(listed == reported, f"{job_id}: committed {listed}, reported {reported}")
        elif listed is not None:
            kept += 1
        extra = names - (listed or set()) - ({".mw-job", ".mw-result.json"} if listed is not None else set())
        orphans += [os.path.join(job_path, n) for n in sorted(extra)]
    orphans += [path for path, _ in folders.values()]
    check(not orphans, f"orphan files: {orphans[:10]}")
    check(not different, f"reported twice with different outcomes: {different[:5]}")
    for i in range(2):
        scratch = os.path.join(output_root, f".scratch-{i}")
        check(not os.path.isdir(scratch) or not os.listdir(scratch),
              f"scratch directory {scratch} left non-empty: {os.listdir(scratch)}")
    for w in soak.all_workers:
        bad = [l.get("raw", "") for l in w.log_lines() if any(m in l.get("raw", "") for m in SANITIZER_MARKS)]
        check(not bad, f"sanitizer report in {w.log_path}: {bad[:3]}")
    summary = {"published": len(soak.jobs), "processed": counts["processed"], "failed": counts["failed"],
               "dead_lettered": counts["dead"], "user_gone": counts["user gone"], "lost": counts["lost"],
               "orphan_files": len(orphans), "kept_committed_results": kept,
               "duplicates_with_different_outcomes": len(different), "idempotent_repeats": repeats,
               "dead_letter_copies": len(soak.dead), "reports": sum(len(a) for a in got.values()),
               "by_kind": by_kind, "faults": soak.faults, "data_service_faults": soak.ds_faults,
               "workers_started": len(soak.all_workers), "seconds": round(time.monotonic() - started, 1)}
    print("soak summary: " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
