"""The published contracts (docs/schemas/) against the worker that implements them.

- Both schemas are valid JSON Schema draft 2020-12 and the examples under docs/schemas/examples/ validate.
- Reports that `mediaworker run` really produces (processed and failed, several kinds of input, every
  operation the message names) validate against result-report.v1.json.
- The job-message schema and the worker's parser (src/job/message.c) agree on a table of messages: what the
  schema accepts the parser accepts, and the reverse, so the two cannot drift apart unnoticed.
"""
import glob
import json
import os
import re

from jsonschema import Draft202012Validator

import corpus
from mwtest import FIXTURES, check, finish, fresh_dir, run

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMAS = os.path.join(ROOT, "docs", "schemas")


def load_validator(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    check(schema.get("$schema") == "https://json-schema.org/draft/2020-12/schema", f"{name} declares draft 2020-12")
    return Draft202012Validator(schema)


MESSAGE = load_validator("job-message.v1.json")
REPORT = load_validator("result-report.v1.json")


def errors(validator, document):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_examples():
    examples = sorted(glob.glob(os.path.join(SCHEMAS, "examples", "*.json")))
    check(len(examples) >= 4, f"examples exist: {examples}")
    for path in examples:
        name = os.path.basename(path)
        validator = MESSAGE if name.startswith("job-message.") else REPORT
        with open(path) as f:
            found = errors(validator, json.load(f))
        check(not found, f"{name} does not validate: {found}")


def test_examples_parse():
    """The message examples are accepted by the worker's parser too (a report comes out, even if failed)."""
    work = fresh_dir("schemas-examples")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(root)
    for path in sorted(glob.glob(os.path.join(SCHEMAS, "examples", "job-message.*.json"))):
        proc = run(["run", path], env=job_env(root, out), timeout=120)
        check(proc.stdout.strip() and "invalid job message" not in proc.stderr,
              f"{os.path.basename(path)}: the parser accepts it: {proc.stderr[-300:]}")


def test_error_codes_documented():
    """Every code of include/mediaworker/error.h is explained in docs/contracts.md."""
    with open(os.path.join(ROOT, "include", "mediaworker", "error.h")) as f:
        codes = re.findall(r"^\s*X\((\w+),", f.read(), re.M)
    with open(os.path.join(ROOT, "docs", "contracts.md")) as f:
        contracts = f.read()
    check(len(codes) > 10, f"error codes found in error.h: {codes}")
    missing = [code for code in codes if f"`{code}`" not in contracts]
    check(not missing, f"error codes not explained in docs/contracts.md: {missing}")


def job_env(root, out):
    return {"MW_INPUT_ROOT": root, "MW_OUTPUT_ROOT": out, "MW_SCRATCH_DIR": os.path.join(out, ".scratch")}


def run_job(work, name, message, root, out):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        json.dump(message, f)
    return run(["run", path], env=job_env(root, out), timeout=300)


def test_real_reports():
    work = fresh_dir("schemas-reports")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(os.path.join(root, "42"))
    files = corpus.build()
    inputs = ["h264_aac.mp4", "rotate90.mp4", "audio.mp3", "still.png", "cover_art.mp3"]
    for name in inputs:
        if name in files:
            os.link(files[name], os.path.join(root, "42", name))
    os.link(os.path.join(FIXTURES, "broken", "random-bytes.mp4"), os.path.join(root, "42", "garbage.mp4"))
    every_operation = [{"type": "probe"}, {"type": "thumbnail", "width": 160},
                       {"type": "storyboard", "interval": 1, "tile_width": 64},
                       {"type": "transcode", "renditions": [120], "hls": True}]
    jobs = [(f"probe-{i}", {"user_id": 42, "job_id": f"probe-{i}", "file_info": {"path": f"42/{name}"},
                            "operations": [{"type": "probe"}]})
            for i, name in enumerate(inputs) if name in files]
    jobs += [
        # Whatever this build supports: a report with every output, or a failure naming the missing one.
        ("all", {"user_id": 42, "job_id": "all", "file_info": {"path": "42/h264_aac.mp4", "name": "clip.mp4"},
                 "operations": every_operation}),
        ("seed", {"user_id": 42, "file_info": {"path": "42/h264_aac.mp4"}}),
        ("garbage", {"user_id": 42, "file_info": {"path": "42/garbage.mp4"}, "operations": [{"type": "probe"}]}),
        ("missing", {"user_id": 42, "file_info": {"path": "42/missing.mp4"}, "operations": [{"type": "probe"}]}),
        ("refused", {"user_id": 42, "file_info": {"path": "/etc/passwd"}, "operations": [{"type": "probe"}]}),
        ("url", {"user_id": 42, "file_info": {"url": "https://example.invalid/a.mp4"}}),
    ]
    statuses = set()
    for name, message in jobs:
        check(not errors(MESSAGE, message), f"job {name}: the test's own message is valid")
        proc = run_job(work, f"{name}.json", message, root, out)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            check(False, f"job {name}: no JSON report (exit {proc.returncode}): {proc.stderr[-600:]}")
            continue
        found = errors(REPORT, report)
        check(not found, f"job {name}: the real report does not match result-report.v1.json: {found}")
        status = report["new_file"]["status"]
        statuses.add(status)
        check((status == "processed") == (proc.returncode == 0), f"job {name}: status {status} vs exit code")
        for output in report["new_file"]["outputs"]:
            check(os.path.isfile(os.path.join(out, output["path"])), f"job {name}: output {output['path']} exists")
    check(statuses == {"processed", "failed"}, f"both kinds of report were checked: {statuses}")


# (message, accepted by the v1 contract). The parser's verdict comes from `mediaworker run`: an accepted
# message always produces a report on stdout (perhaps a failed one, the input does not exist here), a
# refused one produces none and logs "invalid job message".
AGREEMENT = [
    ({"user_id": 42, "file_info": {"path": "a/b.mp4"}}, True),
    ({"user_id": 42.0, "file_info": {"path": "b.mp4"}}, True),
    ({"user_id": 9007199254740991, "file_info": {"path": "b.mp4"}}, True),
    ({"user_id": 42, "file_info": {"path": "b.mp4", "url": None, "name": None}}, True),
    ({"user_id": 42, "file_info": {"url": "https://example.invalid/b.mp4"}}, True),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": None}, True),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": "A-b_c.9"}, True),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "extra": {"ignored": True}}, True),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": [{"type": "probe"}] * 16}, True),
    ({"user_id": 42, "file_info": {"path": "..b/c..d/e.mp4"}}, True),
    ({"file_info": {"path": "b.mp4"}}, False),
    ({"user_id": "42", "file_info": {"path": "b.mp4"}}, False),
    ({"user_id": 0, "file_info": {"path": "b.mp4"}}, False),
    ({"user_id": 1.5, "file_info": {"path": "b.mp4"}}, False),
    ({"user_id": 9007199254740992, "file_info": {"path": "b.mp4"}}, False),
    ({"user_id": 42}, False),
    ({"user_id": 42, "file_info": "b.mp4"}, False),
    ({"user_id": 42, "file_info": {}}, False),
    ({"user_id": 42, "file_info": {"name": "b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4", "url": "https://example.invalid/b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": 7}}, False),
    ({"user_id": 42, "file_info": {"path": "../etc/passwd"}}, False),
    ({"user_id": 42, "file_info": {"path": "a/../../b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "a/.."}}, False),
    ({"user_id": 42, "file_info": {"path": "concat:a.mp4|b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "subfile,,start,0,end,10,,:a.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "SubFile,a.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "img%03d.png"}}, False),
    ({"user_id": 42, "file_info": {"path": "a*.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "a\nb.mp4"}}, False),
    ({"user_id": 42, "file_info": {"path": "a\\b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"url": "ftp://example.invalid/b.mp4"}}, False),
    ({"user_id": 42, "file_info": {"url": "file:///etc/passwd"}}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": []}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": {"type": "probe"}}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": [{"type": "sharpen"}]}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": ["probe"]}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": [{"kind": "probe"}]}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "operations": [{"type": "probe"}] * 17}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": "a/b"}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": ".."}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": ""}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": "x" * 80}, False),
    ({"user_id": 42, "file_info": {"path": "b.mp4"}, "job_id": 7}, False),
    ([{"user_id": 42, "file_info": {"path": "b.mp4"}}], False),
]


def test_parser_agrees_with_schema():
    work = fresh_dir("schemas-agreement")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(root)
    for i, (message, accepted) in enumerate(AGREEMENT):
        schema_says = not errors(MESSAGE, message)
        check(schema_says == accepted, f"schema {'accepts' if schema_says else 'refuses'} case {i}: {message}")
        proc = run_job(work, f"m{i}.json", message, root, out)
        parser_says = bool(proc.stdout.strip())
        check(parser_says == accepted and (parser_says or "invalid job message" in proc.stderr),
              f"parser {'accepts' if parser_says else 'refuses'} case {i}: {message} "
              f"(exit {proc.returncode}) {proc.stderr[-300:]}")


if __name__ == "__main__":
    test_examples()
    test_examples_parse()
    test_error_codes_documented()
    test_real_reports()
    test_parser_agrees_with_schema()
    finish()
