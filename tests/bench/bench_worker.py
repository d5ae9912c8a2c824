"""The whole queue path, probe-only jobs on realistic uploads (benchlib.UPLOADS): publish -> worker -> Data Service report -> ack.

Ours: `mediaworker serve` with MW_JOB_PROCESSES=2 (one per core) and MW_SLOTS at its default, twice that:
4 deliveries in flight. Theirs: the naive design with as many deliveries in flight, 4 python pika consumers
(prefetch 1 each) that spawn `ffprobe` and `curl` per message (defined in this file, run as subprocesses).
Both run against the same private RabbitMQ and the same stand-in Data Service.

Rows: throughput (a burst of jobs published at once: wall time from the first publish to the last
report), latency (jobs published one at a time: p50/p99 from publish to report), and the worker's idle
memory (supervisor + job processes) and per-slot memory.
"""
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))

import benchlib  # noqa: E402
import data_service  # noqa: E402
import rabbitmq  # noqa: E402
import pika  # noqa: E402

JOB_PROCESSES = 2
SLOTS = 2 * JOB_PROCESSES   # MW_SLOTS' default
BURST_OURS = 1000
BURST_THEIRS = 150
SEQUENTIAL = 200

NAIVE_CONSUMER = r'''
import json, subprocess, sys
sys.path.append("/usr/lib/python3/dist-packages")
import pika
url, queue, ds, root = sys.argv[1:5]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.basic_qos(prefetch_count=1)
def on_message(ch, method, props, body):
    msg = json.loads(body)
    probe = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams",
                            root + "/" + msg["file_info"]["path"]], capture_output=True, text=True)
    report = {"new_file": {"job_id": msg["job_id"], "status": "processed" if probe.returncode == 0 else "failed",
                           "probe": json.loads(probe.stdout or "{}")}}
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "PATCH", "-H", "Content-Type: application/json",
                    "--data-binary", "@-", f"{ds}/api/v1/users/{msg['user_id']}/files"],
                   input=json.dumps(report), text=True, check=True)
    ch.basic_ack(method.delivery_tag)
ch.basic_consume(queue, on_message)
ch.start_consuming()
'''


def status_kb(pid, field):
    """VmRSS (now) or VmHWM (the peak so far) of pid, in kB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
    return out


class Run:
    def __init__(self, broker, ds, input_root):
        self.broker, self.ds, self.input_root = broker, ds, input_root
        self.conn = broker.connection()
        self.channel = self.conn.channel()

    def publish(self, path):
        job_id = uuid.uuid4().hex
        body = json.dumps({"job_id": job_id, "user_id": 7, "file_info": {"path": path}})
        self.channel.basic_publish("media", "media.process", body,
                                   pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                        message_id=job_id))
        return job_id, time.monotonic()

    def reported(self):
        return {r["json"]["new_file"]["job_id"]: r["time"] for r in self.ds.requests if r["json"]}

    def burst(self, files, count):
        self.ds.reset()
        sent = [self.publish(files[i % len(files)]) for i in range(count)]
        wanted = {j for j, _ in sent}
        self.ds.wait_for(lambda reqs: len(reqs) >= count, timeout=900)
        done = self.reported()
        missing = wanted - set(done)
        if missing:
            raise RuntimeError(f"{len(missing)} jobs not reported")
        return max(done.values()) - sent[0][1]

    def sequential(self, files, count):
        latencies = []
        for i in range(count):
            self.ds.reset()
            job_id, t0 = self.publish(files[i % len(files)])
            self.ds.wait_for(lambda reqs: len(reqs) >= 1, timeout=60)
            latencies.append(self.ds.requests[0]["time"] - t0)
        latencies.sort()
        return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]

    def close(self):
        self.conn.close()


def main():
    work = os.path.join(benchlib.WORK, "worker")
    os.makedirs(work, exist_ok=True)
    input_root = os.path.join(work, "in")
    os.makedirs(input_root, exist_ok=True)
    # Six hard links of each realistic upload under WORK/worker/in/; the job messages name them relative to
    # MW_INPUT_ROOT (input_root), so no side can answer a name from a cache.
    files = []
    for number, upload in enumerate(benchlib.upload_corpus()):
        files += [os.path.basename(link) for link in
                  benchlib.copies(upload, 6, os.path.join("worker", "in"), prefix=f"{number}-")]

    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        env = dict(os.environ, RABBITMQ_URL=broker.url, POSTGRES_DATA_SERVICE_URL=ds.url, MW_INPUT_ROOT=input_root,
                   MW_OUTPUT_ROOT=os.path.join(work, "out"), MW_SCRATCH_DIR=os.path.join(work, "scratch"),
                   MW_JOB_PROCESSES=str(JOB_PROCESSES), MW_DEFAULT_OPERATIONS="probe", MW_LOG_LEVEL="warn", MW_HTTP_LISTEN="")
        worker = subprocess.Popen([benchlib.BIN, "serve"], env=env, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        job_pids = [p for p in children(worker.pid)]
        idle_kb = rss_kb(worker.pid) + sum(rss_kb(p) for p in job_pids)
        run = Run(broker, ds, input_root)
        run.burst(files, 20)  # warm-up: first opens of libav in each job process
        ours_wall = run.burst(files, BURST_OURS)
        ours_p50, ours_p99 = run.sequential(files, SEQUENTIAL)
        job_pids = [p for p in children(worker.pid)]
        busy_slot_kb = max(rss_kb(p) for p in job_pids) if job_pids else 0
        supervisor_kb = rss_kb(worker.pid)
        # The largest peak of any of our processes (the naive side's ffprobe processes are not sampled).
        peak_kb = max(status_kb(p, "VmHWM") for p in [worker.pid] + job_pids)
        worker.terminate()
        worker.wait(timeout=60)

        naive = [subprocess.Popen([sys.executable, "-c", NAIVE_CONSUMER, broker.url, "media.process", ds.url,
                                   input_root]) for _ in range(SLOTS)]
        time.sleep(1)
        theirs_wall = run.burst(files, BURST_THEIRS)
        theirs_p50, theirs_p99 = run.sequential(files, SEQUENTIAL // 4)
        for p in naive:
            p.terminate()
            p.wait()
        run.close()
        ds.stop()

    ours_rate = BURST_OURS / ours_wall
    theirs_rate = BURST_THEIRS / theirs_wall
    benchlib.report("worker", f"probe jobs/s, {SLOTS} in flight (publish -> report -> ack)", 1 / ours_rate,
                    1 / theirs_rate, peak_kb / 1024, None,
                    detail=f"ours {ours_rate:.0f} jobs/s ({BURST_OURS} jobs; {JOB_PROCESSES} job processes, "
                           f"{SLOTS} slots), naive {SLOTS} pika+ffprobe+curl consumers {theirs_rate:.1f} jobs/s "
                           f"({BURST_THEIRS} jobs); s = seconds per job",
                    target=">= 30x")
    benchlib.report("worker", "latency publish -> report, p50", ours_p50, theirs_p50, peak_kb / 1024, None,
                    detail=f"p50 {ours_p50 * 1000:.1f} ms vs {theirs_p50 * 1000:.1f} ms; p99 "
                           f"{ours_p99 * 1000:.1f} ms vs {theirs_p99 * 1000:.1f} ms (one job at a time)",
                    target="p50 < 20 ms")
    benchlib.report("worker", "memory", None, None, idle_kb / 1024, None,
                    detail=f"idle worker (supervisor + {JOB_PROCESSES} job processes) RSS {idle_kb / 1024:.1f} MB; "
                           f"supervisor {supervisor_kb / 1024:.1f} MB; one job process after "
                           f"{BURST_OURS} jobs {busy_slot_kb / 1024:.1f} MB")


if __name__ == "__main__":
    main()
