"""Scale-out on a real three-node RabbitMQ cluster: the quorum queue's leader stops mid-batch.

Three nodes on loopback (rabbit-a/b/c, shared cookie, joined with rabbitmqctl join_cluster), a quorum work
queue (MW_QUEUE_TYPE=quorum), two workers given all three URLs. A batch of probe jobs is published; the
Data Service answers slowly so the batch is still running when the node that leads the queue is stopped.
The scenario runs twice, on a fresh cluster each time: the leader shut down (SIGTERM) and the leader
killed (SIGKILL). Every job must be reported processed, each report carrying its own job id as
Idempotency-Key (a job may be reported twice only as an idempotent repeat of a redelivery), both workers
must keep serving, and the time to recover is printed: from the stop to the next report, to the cut-off
worker consuming again on a surviving node, and to that worker's first report.
"""
import datetime
import os
import sys
import time

import data_service
import mwtest
import rabbitmq
from mwtest import check
from worker import Worker, publish, wait_until

QUEUE = "media.process"
JOBS = 60


def leader(node):
    """Name of the node leading the work queue, as node sees it ('' when unknown)."""
    out = node.ctl("list_queues", "name", "type", "leader", "--quiet", "--no-table-headers", timeout=30)
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == QUEUE:
            return fields[2]
    return ""


def log_time(line):
    return datetime.datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


def recovery(worker, since):
    """For a worker that lost its node: seconds from `since` (wall clock) to consuming again and to its
    first report after that, or None when it did not lose its connection."""
    lines = [l for l in worker.log_lines() if "ts" in l and log_time(l) >= since]
    lost = next((l for l in lines if "reconnecting" in l.get("msg", "")), None)
    if not lost:
        return None
    after = lines[lines.index(lost):]
    consuming = next((l for l in after if l.get("msg", "").startswith("consuming")), None)
    if not consuming:
        return (None, None)
    reported = next((l for l in after[after.index(consuming):] if "reported in" in l.get("msg", "")), None)
    return (log_time(consuming) - since, log_time(reported) - since if reported else None)


def scenario(work, input_root, mode):
    """mode "stop": the leader shuts down (SIGTERM, maintenance); "kill": it dies (SIGKILL, a crash)."""
    output_root = os.path.join(work, "out-" + mode)
    started = time.monotonic()
    cluster = rabbitmq.Cluster(os.path.join(work, mode))
    ds = data_service.DataService().start()
    workers = []
    try:
        cluster.start()
        print(f"[{mode}] cluster of {len(cluster.nodes)} nodes up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        # Each worker starts on a different node of the list, so the leader's loss hits one of them at
        # least (connections rotate through the URLs from the first).
        urls = [n.url for n in cluster.nodes]
        for i in range(2):
            order = urls[i:] + urls[:i]
            workers.append(Worker(cluster.nodes[i], ds, input_root, output_root, name=f"cluster-{mode}-{i}",
                                  RABBITMQ_URL=",".join(order), MW_QUEUE_TYPE="quorum", MW_HEARTBEAT="2",
                                  HTTP_CLIENT_RETRIES="3").start())
        check(all(w.alive() for w in workers), "both workers started")
        lead = leader(cluster.nodes[0])
        check(lead in [n.node for n in cluster.nodes], f"quorum queue leader found ({lead!r})")
        ds.delay_s = 0.15
        survivor = next(n for n in cluster.nodes if n.node != lead)
        jobs = [publish(survivor, {"user_id": 60, "file_info": {"path": "clip.mp4"}}) for _ in range(JOBS)]
        ds.wait_for(lambda r: len(r) >= JOBS // 4, 30)
        before = len(ds.requests)
        check(before < JOBS, f"the leader stops mid-batch ({before} of {JOBS} reported)")
        stop_at = time.monotonic()
        stop_wall = time.time()
        if mode == "kill":
            cluster.node_named(lead).kill()
        else:
            cluster.node_named(lead).stop()
        stopped_at = time.monotonic()
        reqs = ds.wait_for(lambda r: any(x["time"] > stop_at for x in r), 60)
        first_after = min(x["time"] for x in reqs if x["time"] > stop_at)
        print(f"[{mode}] leader {lead} stopped after {before} of {JOBS} reports (the stop took "
              f"{stopped_at - stop_at:.2f} s); next report {first_after - stop_at:.2f} s after the stop began",
              file=sys.stderr)
        ok = lambda r: {x["json"]["new_file"]["job_id"] for x in r if x["status"] == 200 and x["json"]}
        reqs = ds.wait_for(lambda r: ok(r) >= set(jobs), 60)
        done_at = time.monotonic()
        time.sleep(1)
        reqs = list(ds.requests)
        reported = [x["json"]["new_file"]["job_id"] for x in reqs if x["json"]]
        check(set(reported) == set(jobs), f"every job reported ({len(set(reported))} of {JOBS})")
        check(all(x["json"]["new_file"].get("status") == "processed" for x in reqs if x["json"]),
              "every report says processed")
        check(all(x["headers"].get("Idempotency-Key") == x["path"].split("/")[4] + ":" + x["json"]["new_file"]["job_id"]
                  for x in reqs if x["json"]), "every report carries <user>:<job id> as Idempotency-Key")
        repeats = len(reported) - len(set(reported))
        times = sorted(x["time"] for x in reqs if stop_at - 1 <= x["time"] <= done_at)
        gap = max((b - a for a, b in zip(times, times[1:])), default=0)
        print(f"[{mode}] longest pause between two reports around the failover: {gap:.2f} s", file=sys.stderr)
        print(f"[{mode}] {len(reported)} reports for {JOBS} jobs ({repeats} idempotent repeats); batch done "
              f"{done_at - stop_at:.2f} s after the stop", file=sys.stderr)
        new_lead = leader(survivor)
        check(new_lead and new_lead != lead, f"a new leader was elected ({new_lead!r})")
        check(all(w.alive() for w in workers), "both workers still serving")
        recovered = [recovery(w, stop_wall) for w in workers]
        check(any(recovered), f"a worker reconnected to a surviving node ({recovered})")
        for i, r in enumerate(recovered):
            if r:
                print(f"[{mode}] worker {i} lost its node: consuming again after {r[0]:.2f} s, its first report after "
                      f"{r[1]:.2f} s" if r[0] is not None and r[1] is not None else f"worker {i}: {r}",
                      file=sys.stderr)
                check(r[0] is not None and r[1] is not None, f"worker {i} consumes and reports again")
        # One more job after the failover: the cluster of two still takes work.
        ds.delay_s = 0
        extra = publish(survivor, {"user_id": 60, "file_info": {"path": "clip.mp4"}})
        ds.wait_for(lambda r: extra in ok(r), 30)
        for w in workers:
            check(w.stop() == 0, "worker exits 0")
    except Exception as e:
        check(False, f"cluster ({mode}): {type(e).__name__}: {e}")
    finally:
        for w in workers:
            if w.alive():
                w.stop()
        ds.stop()
        cluster.cleanup()
    print(f"[{mode}] total {time.monotonic() - started:.1f} s", file=sys.stderr)


def main():
    work = mwtest.fresh_dir("cluster")
    input_root = os.path.join(work, "in")
    os.makedirs(input_root)
    mwtest.worker_clip(os.path.join(input_root, "clip.mp4"))
    for mode in sys.argv[1:] or ("stop", "kill"):
        scenario(work, input_root, mode)
    mwtest.finish()


if __name__ == "__main__":
    main()
