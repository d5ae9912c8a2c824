"""URL inputs: downloaded into scratch space under the network policy, then processed like any upload.

A real HTTP server on loopback plays the remote host. Loopback is itself a denied range, so the default
policy must refuse it; the allow-list opens exactly that host for the cases that need a transfer.
"""
import json
import os
import time

import corpus
import origin
from mwtest import check, finish, fresh_dir, run


def run_url_job(work, url, env=None, timeout=60):
    job = os.path.join(work, "job.json")
    with open(job, "w") as f:
        json.dump({"user_id": 9, "job_id": "url-job", "file_info": {"url": url},
                   "operations": [{"type": "probe"}]}, f)
    full_env = {"MW_INPUT_ROOT": work, "MW_OUTPUT_ROOT": os.path.join(work, "out"),
                "MW_SCRATCH_DIR": os.path.join(work, "scratch")}
    full_env.update(env or {})
    proc = run(["run", job], env=full_env, timeout=timeout)
    try:
        return proc, json.loads(proc.stdout)["new_file"]
    except ValueError:
        return proc, {}


def expect_error(work, url, code, env=None, label=None):
    proc, report = run_url_job(work, url, env)
    got = report.get("error", {}).get("code")
    check(proc.returncode == 1 and got == code, f"{label or url}: expected {code}, got {got} ({proc.returncode})")
    scratch = os.path.join(work, "scratch", "url-job")
    check(not os.path.exists(scratch) or not os.listdir(scratch), f"{label or url}: scratch left behind")
    return report


def main():
    corpus.build()
    work = fresh_dir("download")
    server = origin.start(corpus.path("h264_aac.mp4"))
    port = server.server_address[1]
    base = f"http://127.0.0.1:{port}"
    allow = {"MW_URL_ALLOW_NETWORKS": "127.0.0.1/32"}

    report = expect_error(work, f"{base}/clip.mp4", "URL_REFUSED", label="loopback by default")
    check("loopback" in report.get("error", {}).get("message", ""), "the refusal names the range")
    expect_error(work, f"http://localhost:{port}/clip.mp4", "URL_REFUSED", label="name resolving to loopback")
    expect_error(work, f"http://[::1]:{port}/clip.mp4", "URL_REFUSED", label="IPv6 loopback")
    expect_error(work, "http://169.254.169.254/latest/meta-data/", "URL_REFUSED", label="cloud metadata")
    expect_error(work, "http://10.1.2.3/clip.mp4", "URL_REFUSED", label="private network")
    expect_error(work, f"http://0.0.0.0:{port}/clip.mp4", "URL_REFUSED", label="0.0.0.0")

    proc, report = run_url_job(work, f"{base}/clip.mp4", allow)
    check(proc.returncode == 0 and report.get("status") == "processed",
          f"allowed origin: processed ({proc.stderr[-500:]})")
    check(report.get("probe", {}).get("streams", [{}])[0].get("codec") == "h264", "downloaded copy was probed")
    check(not os.listdir(os.path.join(work, "scratch")) or
          not os.listdir(os.path.join(work, "scratch", "url-job")), "scratch cleaned after success")
    proc, report = run_url_job(work, f"{base}/redirect-clip", allow)
    check(report.get("status") == "processed", "a redirect within the allowed origin is followed")

    expect_error(work, f"{base}/redirect-metadata", "URL_REFUSED", allow, "redirect to cloud metadata")
    expect_error(work, f"{base}/redirect-file", "URL_REFUSED", allow, "redirect to file://")
    expect_error(work, f"{base}/huge", "DOWNLOAD_TOO_LARGE", dict(allow, MW_URL_MAX_BYTES="100000"), "size cap")
    started = time.monotonic()
    expect_error(work, f"{base}/stall", "DOWNLOAD_FAILED", dict(allow, MW_URL_TIMEOUT="2"), "stalling server")
    check(time.monotonic() - started < 6, "the stall is cut at the timeout")
    expect_error(work, f"{base}/missing.mp4", "DOWNLOAD_REJECTED", allow, "HTTP 404")
    proc = run_url_job(work, "ftp://127.0.0.1/clip.mp4", allow)[0]
    check(proc.returncode == 1 and "file_info.url" in proc.stderr, "non-http scheme refused by the parser")
    server.shutdown()
    finish()


if __name__ == "__main__":
    main()
