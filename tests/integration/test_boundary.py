"""The trust boundary of a message, attacked the way a client would: through AMQP properties and headers
(a request id often comes from a user's browser) and through the JSON body.

For every attack, the stand-in Data Service must receive exactly one well-formed request per report, to the
right user's path, with no header the attacker wrote; ids that fail the boundary check never reach a
header, a path or a log line; two different messages under one job id never share outputs."""
import os
import re
import sys

import data_service
import mwtest
import rabbitmq
from mwtest import check, finish
from worker import Worker, publish, queue_depth, take_all, wait_until

QUEUE = "media.process"
SMUGGLE = "s\r\nContent-Length: 0\r\n\r\nPATCH /api/v1/users/1/files HTTP/1.1\r\nX-Smuggled: yes"
FORGED_LINE = "2026-01-01T00:00:00.000Z info  [slot] forged"
PLAIN_ID = re.compile(r"^[\x21-\x7e]{1,127}$")


def new_file(request):
    return (request["json"] or {}).get("new_file") or {}


def check_requests_clean(requests, what):
    """Every request the Data Service saw is a PATCH to a real user's path, with plain ids in its headers."""
    for r in requests:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        check(r["method"] == "PATCH" and re.fullmatch(r"/api/v1/users/(42|43)/files", r["path"]),
              f"{what}: request {r['method']} {r['path']} is a report to a real user")
        check("x-smuggled" not in headers, f"{what}: no smuggled header")
        check(PLAIN_ID.match(headers.get("x-request-id", "")), f"{what}: X-Request-ID is a plain id")
        check(re.fullmatch(r"(42|43):[\x21-\x7e]+", headers.get("idempotency-key", "")),
              f"{what}: Idempotency-Key is <user>:<job> ({headers.get('idempotency-key')})")


def test_header_attacks(broker, ds, roots):
    """Hostile values in every AMQP property and header the worker reads: a valid job still runs for its
    own user, once, and a message whose message id is hostile is refused with the reason."""
    w = Worker(broker, ds, *roots, MW_LOG_FORMAT="text").start()
    job = {"user_id": 42, "file_info": {"path": "clip.mp4"}, "operations": [{"type": "probe"}]}
    request_ids = {
        "smuggle": SMUGGLE,
        "lf": "a\nb",
        "nul": "a\x00b",
        "invalid-utf8": b"caf\xe9",
        "64k": "r" * 65536,
        "log-forgery": "x\n" + FORGED_LINE,
    }
    for name, value in request_ids.items():
        publish(broker, job, message_id=f"req-{name}", headers={"X-Request-ID": value})
    publish(broker, job, message_id="req-not-text", headers={"X-Request-ID": 12345})
    refused_ids = {"crlf": "m\r\nX-Smuggled: yes", "space": "m 1", "long": "m" * 200, "utf8": "caf\u00e9"}
    for name, message_id in refused_ids.items():
        publish(broker, job, message_id=message_id)
    expected = len(request_ids) + 1 + len(refused_ids)
    ds.wait_for(lambda r: len(r) >= expected, 60)
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") >= len(refused_ids), 30, what="refused ids dead-lettered")
    check(w.stop() == 0, "headers: worker exits 0")
    requests = list(ds.requests)
    check(len(requests) == expected, f"headers: exactly one request per report ({len(requests)} of {expected})")
    check_requests_clean(requests, "headers")
    processed = [new_file(r).get("job_id") for r in requests if new_file(r).get("status") == "processed"]
    for name in list(request_ids) + ["not-text"]:
        check(processed.count(f"req-{name}") == 1, f"X-Request-ID {name}: the job ran once for its user")
    failed = [new_file(r) for r in requests if new_file(r).get("status") == "failed"]
    check(len(failed) == len(refused_ids) and all(f["error"]["code"] == "INVALID_MESSAGE" for f in failed),
          f"hostile message ids: each refused as INVALID_MESSAGE, reported once ({len(failed)})")
    check(all("message_id" in f["error"]["message"] for f in failed), "the refusal names message_id")
    check(all(PLAIN_ID.match(f["job_id"]) and f["job_id"].startswith("invalid-") for f in failed),
          "a refused message gets a job id of its own, never the hostile one")
    check(len({f["job_id"] for f in failed}) == len(failed), "different refused messages, different job ids")
    dead = take_all(broker, QUEUE + ".dead")
    check(sorted(p.message_id for p, _ in dead) == sorted(refused_ids.values()),
          "the dead-letter copies keep the original message ids for a person to read")
    check(all("message_id" in (p.headers or {}).get("x-mw-error", "") for p, _ in dead), "x-mw-error names it")
    with open(w.log_path, "rb") as f:
        lines = f.read().decode("utf-8", errors="strict").splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
    strays = [l for l in lines if not stamp.match(l) and not l.startswith(("=", "SUMMARY", "    #", " "))]
    check(not strays, f"text log: every line is one of the worker's ({strays[:2]})")
    check(not any(l.startswith(FORGED_LINE) for l in lines), "text log: no forged line")


def test_body_attacks(broker, ds, roots):
    """The JSON reader refuses what cJSON alone would take, naming the field."""
    w = Worker(broker, ds, *roots).start()
    base = '{"user_id": 42, "file_info": {"path": "clip.mp4", "name": %s}, "operations": [{"type": "probe"}]}'
    cases = {
        "cr-lf": (base % '"a\\r\\nb"', "file_info.name"),
        "escaped-nul": (base % '"a\\u0000b"', "file_info.name"),
        "c1-control": (base % '"a\\u0085b"', "file_info.name"),
        "invalid-utf8": ((base % '"caf\xe9"').encode("latin-1"), "file_info.name"),
        "raw-nul": (base.encode() % b'"a\x00b"', "file_info.name"),
        "duplicate-user": ('{"user_id": 42, "user_id": 43, "file_info": {"path": "clip.mp4"}}', "user_id"),
        "trailing": (base % '"a"' + '{"user_id": 43}', "bytes after"),
        "64k-name": (base % ('"' + "n" * 65536 + '"'), "file_info.name"),
    }
    for name, (body, _) in cases.items():
        publish(broker, body, message_id=f"body-{name}")
    wait_until(lambda: queue_depth(broker, QUEUE + ".dead") >= len(cases), 30, what="hostile bodies dead-lettered")
    # The structurally broken two (a repeated key, a second document) name no user that can be trusted.
    reported = len(cases) - 2
    ds.wait_for(lambda r: len(r) >= reported, 30)
    check(w.stop() == 0, "bodies: worker exits 0")
    dead = {p.message_id: (p.headers or {}).get("x-mw-error", "") for p, _ in take_all(broker, QUEUE + ".dead")}
    for name, (_, field) in cases.items():
        reason = dead.get(f"body-{name}")
        check(reason is not None and field in reason, f"body {name}: dead-lettered naming {field} ({reason})")
    requests = list(ds.requests)
    check(len(requests) == reported, f"bodies: one failure report per refused body with a user ({len(requests)})")
    check_requests_clean(requests, "bodies")
    check(all(r["path"] == "/api/v1/users/42/files" for r in requests),
          "a duplicate user_id never reports to the second user")
    check(all(new_file(r).get("status") == "failed" for r in requests), "nothing with a hostile body was processed")


def test_job_id_reuse(broker, ds, roots):
    """A different message under a job id that already has outputs is refused instead of mixing them (and
    leaves them in place); the same message again (a redelivery, a retry) reports the committed result;
    another user's job of the same id is separate."""
    w = Worker(broker, ds, *roots).start()
    thumb = {"user_id": 42, "job_id": "shared-1", "file_info": {"path": "clip.mp4"},
             "operations": [{"type": "thumbnail", "width": 64}]}
    publish(broker, thumb, message_id="m1")
    ds.wait_for(lambda r: len(r) >= 1, 60)
    publish(broker, thumb, message_id="m1")
    ds.wait_for(lambda r: len(r) >= 2, 60)
    other = dict(thumb, operations=[{"type": "thumbnail", "width": 96}])
    publish(broker, other, message_id="m2")
    ds.wait_for(lambda r: len(r) >= 3, 60)
    publish(broker, dict(other, user_id=43), message_id="m3")
    ds.wait_for(lambda r: len(r) >= 4, 60)
    check(w.stop() == 0, "job ids: worker exits 0")
    files = [new_file(r) for r in ds.requests]
    check([f.get("status") for f in files] == ["processed", "processed", "failed", "processed"],
          f"job ids: same message twice runs, a different one under the same id is refused "
          f"({[f.get('status') for f in files]})")
    check(files[2].get("error", {}).get("code") == "JOB_ID_CONFLICT", f"refused as JOB_ID_CONFLICT: {files[2].get('error')}")
    check(files[1].get("outputs") == files[0].get("outputs") and
          any("reporting it again" in l.get("msg", "") for l in w.log_lines() if l.get("job_id") == "shared-1"),
          "the same message again reports the committed result instead of running again")
    check(ds.requests[3]["path"] == "/api/v1/users/43/files" and
          files[3]["outputs"][0]["path"].startswith("43/shared-1/"), "another user's job of the same id is its own")
    out_dir = os.path.join(roots[1], "42", "shared-1")
    thumbs = [n for n in os.listdir(out_dir) if not n.startswith(".")]
    check(len(thumbs) == 1, f"the first job's folder holds only its own outputs: {thumbs}")


def test_output_budget(roots):
    """A small input asking for huge outputs is refused before any decoding, naming the field (pictures over
    the pixel budget, a ladder over the byte budget); outputs are never larger than the source unless
    upscaling is asked, and the same ladder under the byte budget runs."""
    import json
    import time
    env = {"MW_INPUT_ROOT": roots[0], "MW_OUTPUT_ROOT": roots[1], "POSTGRES_DATA_SERVICE_URL": "http://127.0.0.1:9"}
    cases = {
        "eight-8k-upscaled": ({"type": "thumbnail", "format": "png", "sizes": [
            {"width": 6000, "upscale": True} for _ in range(8)]}, "thumbnail.sizes[", "MW_MAX_OUTPUT_PIXELS"),
        "one-over-max-pixels": ({"type": "thumbnail", "width": 8192, "height": 8192, "fit": "cover", "upscale": True},
                                "thumbnail", "MW_MAX_PIXELS"),
        "huge-storyboard": ({"type": "storyboard", "count": 2000, "tile_width": 1920}, "storyboard",
                            "MW_MAX_OUTPUT_PIXELS"),
    }
    cases["ladder-over-bytes"] = ({"type": "transcode", "hls": True}, "transcode", "MW_MAX_OUTPUT_BYTES")
    for name, (operation, field, limit) in cases.items():
        job = os.path.join(roots[1], f"budget-{name}.json")
        with open(job, "w") as f:
            json.dump({"user_id": 42, "job_id": f"budget-{name}", "file_info": {"path": "clip.mp4"},
                       "operations": [operation]}, f)
        started = time.monotonic()
        # The clip's default-ladder transcode with HLS may hold about 350 KB at the caps.
        bytes_budget = {"MW_MAX_OUTPUT_BYTES": "100000"} if limit == "MW_MAX_OUTPUT_BYTES" else {}
        out = mwtest.run(["run", job], env=dict(env, **bytes_budget), timeout=120)
        took = time.monotonic() - started
        report = json.loads(out.stdout or "{}").get("new_file", {})
        error = report.get("error") or {}
        code = "TOO_MANY_BYTES" if limit == "MW_MAX_OUTPUT_BYTES" else "TOO_MANY_PIXELS"
        check(out.returncode == 1 and error.get("code") == code and field in error.get("message", "")
              and limit in error.get("message", ""), f"budget {name}: refused naming {field}: {error}")
        check(took < 10, f"budget {name}: refused up front ({took:.1f} s)")
        check(not os.path.exists(os.path.join(roots[1], "42", f"budget-{name}")) or
              not [n for n in os.listdir(os.path.join(roots[1], "42", f"budget-{name}")) if not n.startswith(".")],
              f"budget {name}: nothing written")
    job = os.path.join(roots[1], "budget-no-upscale.json")
    with open(job, "w") as f:
        json.dump({"user_id": 42, "job_id": "budget-no-upscale", "file_info": {"path": "clip.mp4"},
                   "operations": [{"type": "thumbnail", "sizes": [{"width": 8192} for _ in range(8)]}]}, f)
    out = mwtest.run(["run", job], env=env, timeout=120)
    report = json.loads(out.stdout or "{}").get("new_file", {})
    widths = [o.get("width") for o in report.get("outputs", [])]
    check(out.returncode == 0 and widths == [320] * 8, f"without upscale, sizes stay at the source's: {widths}")
    job = os.path.join(roots[1], "budget-ladder-within.json")
    with open(job, "w") as f:
        json.dump({"user_id": 42, "job_id": "budget-ladder-within", "file_info": {"path": "clip.mp4"},
                   "operations": [{"type": "transcode", "hls": True}]}, f)
    out = mwtest.run(["run", job], env=dict(env, MW_MAX_OUTPUT_BYTES="1000000"), timeout=300)
    report = json.loads(out.stdout or "{}").get("new_file", {})
    folder = os.path.join(roots[1], "42", "budget-ladder-within")
    written = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(folder) for n in names)
    check(out.returncode == 0 and report.get("status") == "processed" and 0 < written <= 1000000,
          f"the same ladder under a 1 MB budget runs and stays in it: {report.get('error')}, {written} bytes")


def main():
    work = mwtest.fresh_dir("boundary")
    input_root, output_root = os.path.join(work, "in"), os.path.join(work, "out")
    os.makedirs(input_root)
    os.makedirs(output_root)
    mwtest.worker_clip(os.path.join(input_root, "clip.mp4"))
    test_output_budget((input_root, output_root))
    with rabbitmq.RabbitMQ(work) as broker:
        ds = data_service.DataService().start()
        try:
            for test in (test_header_attacks, test_body_attacks, test_job_id_reuse):
                ds.reset()
                test(broker, ds, (input_root, output_root))
        finally:
            ds.stop()
    finish()


if __name__ == "__main__":
    sys.exit(main())
