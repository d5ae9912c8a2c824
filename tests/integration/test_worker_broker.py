"""The worker and the broker going away: a broker restart mid-run (reconnect, re-declare, re-consume, every
message processed), two workers competing on one queue, the queue deleted under the worker, a dead node in
the URL list, tier and dead-letter queues deleted under the worker (returned copies), a dead-letter queue that refuses
copies (held, published again), a changed
MW_RETRY_DELAYS, a refused login, and a quorum work queue. One broker for the file (restarted by the first
scenario)."""
import os
import sys
import time

import data_service
import mwtest
import rabbitmq
from mwtest import check
from worker import Worker, publish, queue_depth, take_all, wait_until

QUEUE = "media.process"


def reported_ok(ds):
    return {r["json"]["new_file"]["job_id"] for r in ds.requests
            if r["status"] == 200 and (r["json"] or {}).get("new_file", {}).get("status") == "processed"}


def test_broker_restart(broker, roots):
    ds = data_service.DataService().start()
    w = Worker(broker, ds, *roots, name="restart").start()
    first = [publish(broker, {"user_id": 20, "file_info": {"path": "clip.mp4"}}) for _ in range(10)]
    ds.wait_for(lambda r: reported_ok(ds) >= set(first), 60)
    # Queue up work, then take the broker away while the worker is busy with it.
    second = [publish(broker, {"user_id": 21, "file_info": {"path": "clip.mp4"}}) for _ in range(20)]
    broker.restart()
    third = [publish(broker, {"user_id": 22, "file_info": {"path": "clip.mp4"}}) for _ in range(10)]
    try:
        ds.wait_for(lambda r: reported_ok(ds) >= set(first + second + third), 90)
    except TimeoutError as e:
        check(False, f"restart: {e}; missing {len(set(first + second + third) - reported_ok(ds))}")
    check(w.alive(), "restart: the worker survived the broker restart")
    logs = w.log_lines()
    check(sum("connected to" in l.get("msg", "") for l in logs) >= 2, "restart: reconnected")
    time.sleep(0.5)
    check(w.stop() == 0, "restart: worker exits 0")
    check(queue_depth(broker, QUEUE) == 0, "restart: nothing left unprocessed")
    ds.stop()


def test_two_workers(broker, roots):
    ds = data_service.DataService().start()
    w1 = Worker(broker, ds, *roots, name="w1", MW_SLOTS=1).start()
    w2 = Worker(broker, ds, *roots, name="w2", MW_SLOTS=1).start()
    jobs = [publish(broker, {"user_id": 30, "file_info": {"path": "clip.mp4"}}) for _ in range(30)]
    ds.wait_for(lambda r: reported_ok(ds) >= set(jobs), 60)
    time.sleep(0.3)
    check(w1.stop() == 0 and w2.stop() == 0, "two workers: both exit 0")
    per_worker = [sum("job completed" in l.get("msg", "") for l in w.log_lines()) for w in (w1, w2)]
    check(sum(per_worker) >= 30 and all(n > 0 for n in per_worker), f"two workers: shared the jobs {per_worker}")
    check(queue_depth(broker, QUEUE) == 0, "two workers: queue drained")
    ds.stop()


def test_queue_deleted_and_cluster_urls(broker, roots):
    """consumer_cancel_notify: the queue deleted under the worker makes it re-declare and consume again.
    RABBITMQ_URL lists a dead node first: the worker moves on to the live one."""
    ds = data_service.DataService().start()
    dead = f"amqp://guest:guest@127.0.0.1:{rabbitmq.free_port()}/%2F"
    w = Worker(broker, ds, *roots, name="cancel", RABBITMQ_URL=f"{dead},{broker.url}").start()
    first = publish(broker, {"user_id": 50, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: first in reported_ok(ds), 30)
    conn = broker.connection()
    conn.channel().queue_delete(QUEUE)
    conn.close()
    wait_until(lambda: any("cancelled our consumer" in l.get("msg", "") for l in w.log_lines()), 15,
               what="basic.cancel noticed")
    wait_until(lambda: sum("consuming" in l.get("msg", "") for l in w.log_lines()) >= 2, 20,
               what="consuming again")
    second = publish(broker, {"user_id": 50, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: second in reported_ok(ds), 30)
    check(w.stop() == 0, "cancel: worker exits 0")
    ds.stop()


def test_seed_url_form(broker, roots):
    """RABBITMQ_URL as the seed's aio-pika users write it, with a lone "/" for the default vhost (also the
    worker's own default form): the worker logs in to vhost "/" and processes a job."""
    ds = data_service.DataService().start()
    url = broker.url.replace("/%2F", "/")
    check(url.endswith(":%d/" % broker.port), f"URL under test {url}")
    w = Worker(broker, ds, *roots, name="seed-url", RABBITMQ_URL=url).start()
    job = publish(broker, {"user_id": 60, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: job in reported_ok(ds), 30)
    check(not any("vhost" in l.get("msg", "") for l in w.log_lines()), "seed URL form: no vhost error")
    check(w.stop() == 0, "seed URL form: worker exits 0")
    ds.stop()


def test_copies_never_vanish(broker, roots):
    """Retry and dead-letter copies are published mandatory, with confirms: with the first retry tier and
    the dead-letter queue deleted under the running worker, a copy that finds no queue comes back, the
    worker declares its topology again and publishes it once more, and acks the original only then."""
    ds = data_service.DataService().start()
    w = Worker(broker, ds, *roots, name="returns", HTTP_CLIENT_RETRIES=0, MW_SLOTS=1).start()
    def delete(queue):
        conn = broker.connection()
        conn.channel().queue_delete(queue)
        conn.close()

    for round in (1, 2):
        delete(QUEUE + ".retry.1")
        ds.script(503)
        retried = publish(broker, {"user_id": 60, "file_info": {"path": "clip.mp4"}})
        try:
            ds.wait_for(lambda r: retried in reported_ok(ds), 30)
        except TimeoutError:
            check(False, f"returns {round}: the retried copy vanished")
        delete(QUEUE + ".dead")
        invalid = publish(broker, {"user_id": 60}, message_id=f"returned-invalid-{round}")
        try:
            wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 30, what="the dead letter")
        except TimeoutError:
            check(False, f"returns {round}: the dead letter vanished")
        dead = take_all(broker, QUEUE + ".dead")
        check([p.message_id for p, _ in dead] == [invalid], f"returns {round}: the invalid message is in the DLQ")
    returned = [l for l in w.log_lines() if "was returned" in l.get("msg", "")]
    check(len(returned) == 4, f"returns: each deleted queue noticed and declared again ({len(returned)} returns)")
    check(w.stop() == 0, "returns: worker exits 0")
    check(queue_depth(broker, QUEUE) == 0 and queue_depth(broker, QUEUE + ".retry.1") == 0,
          "returns: nothing left behind")
    ds.stop()


def readyz(port):
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


def test_refused_copy_held(broker, roots):
    """A dead-letter queue at an operator's length limit that rejects publishes nacks the copy. The original
    is neither acked (the copy does not exist) nor requeued at once (it would come straight back, as fast
    as the broker delivers): it is held unacked while the copy is published again with backoff, /readyz
    says 503, the other jobs go on (a held original takes one place of the prefetch, one per slot); once the queue takes copies again the dead letter lands and the original
    is acked. A worker stopped while it holds one leaves the message in the work queue."""
    ds = data_service.DataService().start()
    port = rabbitmq.free_port()
    policy = ("set_policy", "--apply-to", "queues", "full-dead", f"^{QUEUE}\\.dead$",
              '{"max-length": 0, "overflow": "reject-publish"}')
    out = broker.ctl(*policy)
    check(out.returncode == 0, f"held: policy set ({out.stdout}{out.stderr})")
    w = Worker(broker, ds, *roots, name="held", MW_SLOTS=2, MW_HTTP_LISTEN=f"127.0.0.1:{port}").start()
    invalid = publish(broker, {"user_id": 61}, message_id="held-invalid")
    wait_until(lambda: any("held unacknowledged" in l.get("msg", "") for l in w.log_lines()), 20,
               what="the refused copy held")
    check(readyz(port) == 503, "held: /readyz answers 503 while a copy is held")
    ok = publish(broker, {"user_id": 61, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: ok in reported_ok(ds), 30)
    time.sleep(2.5)
    sends = [l for l in w.log_lines() if "publishing the held copy" in l.get("msg", "")]
    check(1 <= len(sends) <= 3, f"held: published again with backoff, not in a loop ({len(sends)} in ~3 s)")
    check(queue_depth(broker, QUEUE) == 0, "held: the original is not back in the work queue meanwhile")
    check(broker.ctl("clear_policy", "full-dead").returncode == 0, "held: policy cleared")
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") == 1, 40, what="the held dead letter landing")
    dead = take_all(broker, QUEUE + ".dead")
    check([p.message_id for p, _ in dead] == [invalid], "held: the invalid message reached the DLQ once")
    wait_until(lambda: readyz(port) == 200, 10, what="/readyz ready again")

    # Stopped while holding: the original is requeued, not lost.
    check(broker.ctl(*policy).returncode == 0, "held: policy set again")
    held = publish(broker, {"user_id": 61}, message_id="held-at-stop")
    wait_until(lambda: sum("held unacknowledged" in l.get("msg", "") for l in w.log_lines()) >= 2, 20,
               what="the second refused copy held")
    check(w.stop() == 0, "held: worker exits 0 while holding a copy")
    back = take_all(broker, QUEUE)
    check([p.message_id for p, _ in back] == [held], f"held: stopped, the original is back in the work queue "
          f"({[p.message_id for p, _ in back]})")
    broker.ctl("clear_policy", "full-dead")
    check(queue_depth(broker, QUEUE + ".dead") == 0, "held: no copy made it while refused")
    ds.stop()


def test_retry_delays_changed(broker, roots):
    """Changing MW_RETRY_DELAYS needs no manual step: empty tier queues are declared again with the new
    delay; a tier that still holds copies is used as it is (they wait the old delay) and nothing is lost."""
    ds = data_service.DataService().start()
    old = Worker(broker, ds, *roots, name="delays-old", MW_RETRY_DELAYS="1,2").start()
    check(old.stop() == 0, "delays: the first worker exits 0")
    new = Worker(broker, ds, *roots, name="delays-new", MW_RETRY_DELAYS="3,5", HTTP_CLIENT_RETRIES=0).start()
    check(sum("declared again" in l.get("msg", "") for l in new.log_lines()) == 2,
          "delays: both empty tiers declared again with the new delays")
    ds.script(503)
    job = publish(broker, {"user_id": 70, "file_info": {"path": "clip.mp4"}})
    ds.wait_for(lambda r: job in reported_ok(ds), 30)
    times = [r["time"] for r in ds.reports_for(job)]
    check(len(times) == 2 and times[1] - times[0] >= 2.5, f"delays: the retry waited the new 3 s tier "
          f"({[round(t - times[0], 1) for t in times]})")
    check(new.stop() == 0, "delays: the second worker exits 0")
    # A copy waiting in the 3 s tier while a worker with 1 s starts: the tier is kept, the copy comes back.
    waiting = publish(broker, {"user_id": 71, "file_info": {"path": "clip.mp4"}}, exchange="",
                      routing_key=QUEUE + ".retry.1")
    third = Worker(broker, ds, *roots, name="delays-third", MW_RETRY_DELAYS="1,2").start()
    check(any("used as it is" in l.get("msg", "") and ".retry.1" in l.get("msg", "") for l in third.log_lines()),
          "delays: the busy tier is used as it is, with a warning naming it")
    ds.wait_for(lambda r: waiting in reported_ok(ds), 30)
    check(third.stop() == 0, "delays: the third worker exits 0")
    conn = broker.connection()
    for tier in (1, 2):
        conn.channel().queue_delete(f"{QUEUE}.retry.{tier}")
    conn.close()
    ds.stop()


def test_login_refused(broker, roots):
    """A broker that refuses the login is retried with backoff, but the log says so once, in one error
    line, and /readyz names the reason, instead of a warning per second."""
    import urllib.error
    import urllib.request
    ds = data_service.DataService().start()
    port = rabbitmq.free_port()
    url = broker.url.replace("guest:guest", "guest:wrong")
    w = Worker(broker, ds, *roots, name="refused", RABBITMQ_URL=url, MW_HTTP_LISTEN=f"127.0.0.1:{port}")
    w.start(ready=None)
    time.sleep(8)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        code, body = 200, ""
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read().decode()
    logs = [l for l in w.log_lines() if l.get("component") == "broker"]
    errors = [l for l in logs if l.get("level") == "error"]
    warnings = [l for l in logs if l.get("level") == "warn"]
    check(len(errors) == 1 and "ACCESS_REFUSED" in errors[0].get("msg", ""),
          f"refused: one error line naming the refusal ({[l.get('msg') for l in errors]})")
    check(len(warnings) <= 1, f"refused: no warning per attempt ({len(warnings)} warnings)")
    check(code == 503 and "ACCESS_REFUSED" in body, f"refused: /readyz says why ({code} {body.strip()})")
    check(w.stop() == 0, "refused: worker stops cleanly")
    ds.stop()


def test_quorum_queue(broker, roots):
    ds = data_service.DataService().start()
    queue = "media.quorum"
    w = Worker(broker, ds, *roots, name="quorum", MW_QUEUE_TYPE="quorum", MW_QUEUE=queue).start()
    jobs = [publish(broker, {"user_id": 40, "file_info": {"path": "clip.mp4"}}, routing_key=queue)
            for _ in range(5)]
    ds.wait_for(lambda r: reported_ok(ds) >= set(jobs), 30)
    check(w.stop() == 0, "quorum: worker exits 0")
    # A classic worker on the quorum queue: the broker refuses its declaration; it uses the queue as it is
    # and says what to do to apply its MW_QUEUE_TYPE, instead of consuming nothing.
    w2 = Worker(broker, ds, *roots, name="classic", MW_QUEUE_TYPE="classic", MW_QUEUE=queue).start()
    check(any("MW_QUEUE_TYPE" in l.get("msg", "") and queue in l.get("msg", "") for l in w2.log_lines()),
          "quorum: the type mismatch is logged, naming the queue")
    job = publish(broker, {"user_id": 40, "file_info": {"path": "clip.mp4"}}, routing_key=queue)
    ds.wait_for(lambda r: job in reported_ok(ds), 30)
    check(w2.stop() == 0, "quorum: the mismatched worker consumed the queue and stops cleanly")
    ds.stop()


def main():
    work = mwtest.fresh_dir("worker-broker")
    input_root = os.path.join(work, "in")
    os.makedirs(input_root)
    mwtest.worker_clip(os.path.join(input_root, "clip.mp4"))
    roots = (input_root, os.path.join(work, "out"))
    with rabbitmq.RabbitMQ(work) as broker:
        for test in (test_broker_restart, test_two_workers, test_queue_deleted_and_cluster_urls, test_seed_url_form,
                     test_copies_never_vanish, test_refused_copy_held, test_retry_delays_changed,
                     test_login_refused, test_quorum_queue):
            if sys.argv[1:] and test.__name__ not in sys.argv[1:]:
                continue
            started = time.monotonic()
            try:
                test(broker, roots)
            except Exception as e:
                check(False, f"{test.__name__}: {type(e).__name__}: {e}")
            print(f"{test.__name__}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    mwtest.finish()


if __name__ == "__main__":
    main()
