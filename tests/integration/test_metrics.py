"""The worker's HTTP endpoint (MW_HTTP_LISTEN): /healthz, /readyz and /metrics, scraped while it works.

A private broker, the stand-in Data Service and one `serve` (one slot, so counts are exact). Checks that
the exposition parses (HELP and TYPE for every family, cumulative buckets ending in +Inf == _count), that
the counters and histograms move by exactly what each job should add (a probe+thumbnail job, an invalid
message, a report answered 503 then 200, a job process killed while idle), and that /readyz follows the broker (503 while it is down, 200
after it is back) and turns 503 as soon as SIGTERM starts the drain, while /healthz stays 200.
"""
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

import data_service
import mwtest
import rabbitmq
from mwtest import check
from worker import Worker, publish, queue_depth, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad labels {text!r}")
        labels[m.group(1)] = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), m.group(2))
        pos = m.end()
    return labels


def parse(text):
    """Parses the exposition; returns {(name, frozenset(labels)): value} and raises on anything malformed."""
    helps, types, samples = {}, {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError(f"bad type {line!r}")
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        name, labels, value = m.group(1), parse_labels(m.group(3) or ""), float(m.group(4))
        family = re.sub(r'_(bucket|sum|count)$', "", name) if re.sub(r'_(bucket|sum|count)$', "", name) in types \
            and types[re.sub(r'_(bucket|sum|count)$', "", name)] == "histogram" else name
        if family not in helps or family not in types:
            raise ValueError(f"{name}: no HELP/TYPE before its samples")
        if not name.startswith("mediaworker_"):
            raise ValueError(f"{name}: not prefixed mediaworker_")
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError(f"duplicate sample {line!r}")
        samples[key] = value
    for family, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items() if k[0] == family + "_bucket"))
        if not buckets or buckets[-1][0] != float("inf"):
            raise ValueError(f"{family}: no +Inf bucket")
        if any(b[1] < a[1] for a, b in zip(buckets, buckets[1:])):
            raise ValueError(f"{family}: buckets not cumulative")
        if buckets[-1][1] != samples.get((family + "_count", frozenset())):
            raise ValueError(f"{family}: +Inf bucket != _count")
        if (family + "_sum", frozenset()) not in samples:
            raise ValueError(f"{family}: no _sum")
    return samples


def scrape(port):
    status, body = get(port, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse(body)


# Series /metrics exports from the start (src/worker/metrics.c), each with its label set: a rename or a
# dropped series fails here instead of reading as 0.
ALWAYS = ([(n, {}) for n in ("jobs_processed_total", "jobs_failed_total", "retries_total", "dead_letters_total",
                             "redeliveries_total", "invalid_messages_total", "users_gone_total",
                             "broker_reconnects_total", "input_bytes_total", "output_bytes_total",
                             "jobs_in_flight", "job_processes", "broker_consuming", "draining",
                             "job_duration_seconds_count", "job_duration_seconds_sum",
                             "data_service_request_duration_seconds_count",
                             "data_service_request_duration_seconds_sum")]
          + [("job_process_restarts_total", {"cause": c}) for c in ("crash", "timeout", "memory", "cpu", "recycle")]
          + [("data_service_requests_total", {"outcome": o}) for o in ("ok", "transient", "permanent", "gone")])


def value(samples, name, **labels):
    """name{labels} in samples, or None when the series is missing (so `== 0` cannot pass on a missing one)."""
    return samples.get((name, frozenset(labels.items())))


def delta(before, after, name, **labels):
    """after - before; a row missing before counts as 0 (labelled rows appear on first use), one missing
    after fails a check and yields NaN, which no comparison accepts."""
    now = value(after, name, **labels)
    if not check(now is not None, f"{name}{labels or ''} exported"):
        return float("nan")
    then = value(before, name, **labels)
    return now - (then if then is not None else 0.0)


def wait_metric_below(port, name, below, timeout=30, **labels):
    """Scrapes until name{labels} is present and below `below` (or the timeout); returns the last samples."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        got = value(samples, name, **labels)
        if (got is not None and got < below) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def wait_metric(port, name, at_least, timeout=30, **labels):
    """Scrapes until name{labels} >= at_least; returns that scrape (counts are updated after the report)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        got = value(samples, name, **labels)
        if (got is not None and got >= at_least) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def wait_status(port, path, status, timeout):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = get(port, path, timeout=2)
        except OSError as e:
            got = (None, str(e))
        if got[0] == status:
            return got
        time.sleep(0.05)
    return got


def test_jobs(port, broker, ds, clip, work):
    code, body = get(port, "/healthz")
    check(code == 200, f"healthz: {code} {body}")
    code, body = wait_status(port, "/readyz", 200, 10)
    check(code == 200, f"readyz once consuming: {code} {body}")
    check(get(port, "/nope")[0] == 404, "unknown path: 404")
    manifests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docker", "k8s")
    for name in ("deployment.yaml", "deployment-gpu.yaml"):
        with open(os.path.join(manifests, name)) as f:
            paths = re.findall(r"Probe:\s*\n\s*httpGet:\s*\n\s*path:\s*(\S+)", f.read())
        check(len(paths) >= 2 and all(get(port, p)[0] == 200 for p in paths),
              f"{name}: its probe paths {paths} answer 200 on a ready worker")
    m0 = scrape(port)
    for name, labels in ALWAYS:
        check(value(m0, "mediaworker_" + name, **labels) is not None, f"mediaworker_{name}{labels or ''} exported")
    for name in ("jobs_processed_total", "jobs_failed_total", "dead_letters_total", "invalid_messages_total",
                 "jobs_in_flight", "draining", "job_duration_seconds_count"):
        got = value(m0, "mediaworker_" + name)
        check(got == 0, f"mediaworker_{name} starts at 0 ({got})")
    check(value(m0, "mediaworker_broker_consuming") == 1 and value(m0, "mediaworker_job_processes") == 1,
          "gauges: consuming, one job process")
    check(any(k[0] == "mediaworker_build_info" for k in m0), "build_info present")

    # A good probe + thumbnail job.
    job = publish(broker, {"user_id": 1, "file_info": {"path": "clip.mp4"},
                           "operations": [{"type": "probe"}, {"type": "thumbnail", "width": 64}]})
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    m1 = wait_metric(port, "mediaworker_jobs_processed_total", 1)
    report = ds.reports_for(job, 200)[0]["json"]["new_file"]
    check(report.get("status") == "processed", f"good job processed ({report.get('status')})")
    check(delta(m0, m1, "mediaworker_jobs_processed_total") == 1, "good job: jobs_processed_total +1")
    for op in ("probe", "thumbnail"):
        check(delta(m0, m1, "mediaworker_jobs_total", operation=op, outcome="processed") == 1,
              f"good job: jobs_total{{operation={op},outcome=processed}} +1")
    check(delta(m0, m1, "mediaworker_job_duration_seconds_count") == 1, "good job: one duration observed")
    check(0 < delta(m0, m1, "mediaworker_job_duration_seconds_sum") < 30, "good job: duration sum plausible")
    check(delta(m0, m1, "mediaworker_data_service_requests_total", outcome="ok") == 1, "good job: one DS 2xx")
    check(delta(m0, m1, "mediaworker_data_service_request_duration_seconds_count") == 1, "good job: one DS latency")
    check(delta(m0, m1, "mediaworker_input_bytes_total") == os.path.getsize(clip),
          f"good job: input bytes = file size ({delta(m0, m1, 'mediaworker_input_bytes_total')})")
    out_bytes = sum(o["bytes"] for o in report.get("outputs", []))
    check(out_bytes > 0 and delta(m0, m1, "mediaworker_output_bytes_total") == out_bytes,
          f"good job: output bytes = the report's ({out_bytes})")
    accel = report.get("acceleration") or {}
    check("decode" in accel, f"good job: the thumbnail's report says where it decoded ({accel})")
    if accel:
        fallback = "yes" if accel.get("fallback") else "no"
        check(delta(m0, m1, "mediaworker_hwaccel_decodes_total", decode=accel["decode"], fallback=fallback) == 1,
              f"good job: hwaccel_decodes_total{{decode={accel['decode']},fallback={fallback}}} +1")
    # The job leaves the in-flight gauge after its ack, which follows the report: wait for that, not for luck.
    settled = wait_metric_below(port, "mediaworker_jobs_in_flight", 1)
    check(value(settled, "mediaworker_jobs_in_flight") == 0, "good job: nothing in flight after")

    # An invalid message: dead-lettered, no report (no user id).
    publish(broker, b"{not json")
    wait_until(lambda: queue_depth(broker, "media.process.dead") == 1, 20, what="invalid dead-lettered")
    m2 = wait_metric(port, "mediaworker_invalid_messages_total",
                     (value(m1, "mediaworker_invalid_messages_total") or 0) + 1)
    check(delta(m1, m2, "mediaworker_invalid_messages_total") == 1, "invalid: invalid_messages_total +1")
    check(delta(m1, m2, "mediaworker_dead_letters_total") == 1, "invalid: dead_letters_total +1")
    check(delta(m1, m2, "mediaworker_data_service_request_duration_seconds_count") == 0, "invalid: no DS request")
    check(delta(m1, m2, "mediaworker_jobs_processed_total") == 0 and delta(m1, m2, "mediaworker_jobs_failed_total") == 0,
          "invalid: no job counted")

    # A report answered 503, then 200.
    ds.reset()
    ds.script(503)
    publish(broker, {"user_id": 2, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    m3 = wait_metric(port, "mediaworker_jobs_processed_total", 2)
    check(delta(m2, m3, "mediaworker_data_service_requests_total", outcome="transient") == 1, "503: one transient")
    check(delta(m2, m3, "mediaworker_data_service_requests_total", outcome="ok") == 1, "503: then one ok")
    check(delta(m2, m3, "mediaworker_data_service_request_duration_seconds_count") == 2, "503: two latencies")
    check(delta(m2, m3, "mediaworker_jobs_total", operation="probe", outcome="processed") == 1, "503: probe +1")
    check(delta(m2, m3, "mediaworker_retries_total") == 0, "503: retried in the slot, not a retry tier")
    check(delta(m2, m3, "mediaworker_redeliveries_total") == 0, "503: no redelivery")
    for k in ("crash", "timeout", "memory", "cpu", "recycle"):
        check(value(m3, "mediaworker_job_process_restarts_total", cause=k) == 0, f"no restarts ({k})")


def ended(pid):
    """True once pid is a zombie or gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_restart(port, broker, ds, w):
    """A job process killed while idle is replaced at the next job and counted as a crash."""
    before = scrape(port)
    pids = w.job_pids()
    check(len(pids) == 1, f"one job process ({pids})")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # "Killed while idle": the next job comes once the kill has taken effect (the process is a zombie or
    # gone), not while it is still being torn down.
    wait_until(lambda: all(ended(pid) for pid in pids), 10, what="killed job process ended")
    ds.reset()
    job = publish(broker, {"user_id": 4, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: any(x["status"] == 200 for x in r), 30)
    after = wait_metric(port, "mediaworker_jobs_processed_total",
                        (value(before, "mediaworker_jobs_processed_total") or 0) + 1)
    check(ds.reports_for(job, 200)[0]["json"]["new_file"]["status"] == "processed", "restart: job processed")
    check(delta(before, after, "mediaworker_job_process_restarts_total", cause="crash") == 1,
          "restart: counted as a crash")
    check(value(after, "mediaworker_job_processes") == 1, "restart: one job process again")


def test_broker_outage(port, broker):
    before = scrape(port)
    broker.stop()
    code, body = wait_status(port, "/readyz", 503, 15)
    check(code == 503 and "broker" in body, f"readyz with the broker down: {code} {body.strip()}")
    check(get(port, "/healthz")[0] == 200, "healthz with the broker down: 200")
    broker.start()
    code, body = wait_status(port, "/readyz", 200, 30)
    check(code == 200, f"readyz after the broker is back: {code} {body.strip()}")
    after = scrape(port)
    check(delta(before, after, "mediaworker_broker_reconnects_total") >= 1,
          f"broker reconnects counted ({delta(before, after, 'mediaworker_broker_reconnects_total')})")


def test_drain(port, broker, ds, w):
    ds.reset()
    ds.stall_s = 3
    ds.script("stall")
    publish(broker, {"user_id": 3, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: len(r) >= 1, 30)
    w.signal(signal.SIGTERM)
    code, body = wait_status(port, "/readyz", 503, 3)
    check(code == 503 and "draining" in body, f"readyz during the drain: {code} {body.strip()}")
    check(get(port, "/healthz")[0] == 200, "healthz during the drain: 200")
    check(value(scrape(port), "mediaworker_jobs_in_flight") == 1, "one job in flight during the drain")
    check(w.wait(30) == 0, "worker exits 0 after the drain")


def main():
    work = mwtest.fresh_dir("metrics")
    input_root = os.path.join(work, "in")
    output_root = os.path.join(work, "out")
    os.makedirs(input_root)
    clip = mwtest.worker_clip(os.path.join(input_root, "clip.mp4"))
    port = rabbitmq.free_port()
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        w = Worker(broker, ds, input_root, output_root, MW_SLOTS=1, MW_HTTP_LISTEN=f"127.0.0.1:{port}",
                   MW_RETRY_DELAYS="1").start()
        try:
            for name, step in (("jobs", lambda: test_jobs(port, broker, ds, clip, work)),
                               ("restart", lambda: test_restart(port, broker, ds, w)),
                               ("broker outage", lambda: test_broker_outage(port, broker)),
                               ("drain", lambda: test_drain(port, broker, ds, w))):
                started = time.monotonic()
                try:
                    step()
                except Exception as e:
                    check(False, f"{name}: {type(e).__name__}: {e}")
                print(f"{name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        finally:
            if w.alive():
                w.stop()
            ds.stop()
    mwtest.finish()


if __name__ == "__main__":
    main()
