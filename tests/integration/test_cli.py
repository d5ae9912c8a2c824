"""The command line: help, exit codes, version, configuration printing and validation, docs coverage."""
import json
import os
import re

from mwtest import check, finish, fresh_dir, media, run

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
COMMANDS = ["probe", "run", "config", "version", "caps", "decode", "thumbnail", "storyboard", "transcode"]


def test_help_and_exit_codes():
    proc = run([])
    check(proc.returncode == 2 and "usage: mediaworker" in proc.stderr, "no command: usage, exit 2")
    proc = run(["frobnicate"])
    check(proc.returncode == 2 and "unknown command" in proc.stderr, "unknown command: exit 2")
    for command in COMMANDS:
        proc = run([command, "--help"])
        check(proc.returncode == 0 and f"usage: mediaworker {command}" in proc.stdout, f"{command} --help")
        check("HTTP_CLIENT_TIMEOUT" in proc.stdout, f"{command} --help lists the configuration")
    proc = run(["config", "--no-such-flag", "1"])
    check(proc.returncode == 2 and "unknown option --no-such-flag" in proc.stderr, "unknown flag: exit 2")


def test_version_names_the_libraries():
    proc = run(["version"], check_rc=0)
    for library in ("mediaworker", "libavformat", "libavcodec", "libswscale", "rabbitmq-c", "libcurl", "cJSON"):
        check(re.search(rf"^{re.escape(library)}\s+\d", proc.stdout, re.M) is not None, f"version lists {library}")


def test_config_masks_secrets_and_validates():
    env = {"RABBITMQ_URL": "amqp://worker:s3cret@rabbit-1:5672/,amqps://worker:s3cret@rabbit-2:5671/",
           "MW_DATA_SERVICE_TOKEN": "tok-abc", "HTTP_CLIENT_RETRIES": "5"}
    proc = run(["config", "--slots", "3"], env=env, check_rc=0)
    printed = json.loads(proc.stdout)
    check("s3cret" not in proc.stdout and "tok-abc" not in proc.stdout, "secrets are masked")
    check(printed["RABBITMQ_URL"] == "amqp://worker:****@rabbit-1:5672/,amqps://worker:****@rabbit-2:5671/",
          f"URL list masked: {printed['RABBITMQ_URL']}")
    check(printed["MW_SLOTS"] == 3 and printed["HTTP_CLIENT_RETRIES"] == 5, "flags and environment applied")
    for variable, value, expected in [("HTTP_CLIENT_RETRIES", "-1", "from 0 to 20"),
                                      ("MW_QUEUE_TYPE", "stream", "classic|quorum"),
                                      ("RABBITMQ_URL", "http://x", "amqp://"),
                                      ("POSTGRES_DATA_SERVICE_URL", "data:8080", "http://"),
                                      ("MW_DEFAULT_OPERATIONS", "probe,thumbnial", "unknown type \"thumbnial\""),
                                      ("MW_DEFAULT_OPERATIONS", ",", "names no operation"),
                                      ("MW_URL_ALLOW_NETWORKS", "10.0.0.0/99", "not an address or CIDR")]:
        proc = run(["config"], env={variable: value})
        check(proc.returncode == 2 and variable in proc.stderr and expected in proc.stderr,
              f"{variable}={value}: {proc.stderr.strip()}")
    proc = run(["config"], env={"MW_JOB_PROCESSES": "3", "MW_SLOTS": "2"})
    check(proc.returncode == 2 and "MW_JOB_PROCESSES (3) above MW_SLOTS (2)" in proc.stderr,
          f"more job processes than slots refused: {proc.stderr.strip()}")
    proc = run(["config"], env={"MW_DEFAULT_OPERATIONS": "probe, thumbnail"}, check_rc=0)
    check(json.loads(proc.stdout)["MW_DEFAULT_OPERATIONS"] == "probe, thumbnail", "operations may be space separated")


def test_every_variable_is_documented():
    printed = json.loads(run(["config"], check_rc=0).stdout)
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        docs = f.read()
    for variable in printed:
        check(f"`{variable}`" in docs, f"{variable} is documented in docs/configuration.md")


def test_refusals_are_the_same_everywhere():
    """A file every command refuses (Sorenson video in FLV: not on the codec list) gets the same JSON error
    on stdout from every media command, exit 1, and the same code in a job's report."""
    sorenson = media("cli-sorenson.flv", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                                          "-c:v", "flv"])
    out = fresh_dir("cli-refusals")
    for command, extra in (("thumbnail", ["-o", os.path.join(out, "t.jpg")]),
                           ("storyboard", ["-o", os.path.join(out, "sb")]),
                           ("transcode", ["-o", os.path.join(out, "tc")])):
        proc = run([command, sorenson] + extra, timeout=120)
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            answer = {}
        check(proc.returncode == 1 and answer.get("error", {}).get("code") == "CODEC_REFUSED" and
              answer.get("file") == sorenson, f"{command}: exit 1 with CODEC_REFUSED as JSON: {proc.stdout[:300]}")
    root = os.path.dirname(sorenson)
    job = os.path.join(out, "job.json")
    with open(job, "w") as f:
        json.dump({"user_id": 1, "job_id": "refused", "file_info": {"path": os.path.basename(sorenson)},
                   "operations": [{"type": "transcode"}]}, f)
    proc = run(["run", job], env={"MW_INPUT_ROOT": root, "MW_OUTPUT_ROOT": os.path.join(out, "jobs")}, timeout=120)
    report = json.loads(proc.stdout or "{}").get("new_file", {})
    check(report.get("error", {}).get("code") == "CODEC_REFUSED", f"a job's transcode: {report.get('error')}")


if __name__ == "__main__":
    test_help_and_exit_codes()
    test_refusals_are_the_same_everywhere()
    test_version_names_the_libraries()
    test_config_masks_secrets_and_validates()
    test_every_variable_is_documented()
    finish()
