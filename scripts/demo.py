"""The demo driven by scripts/demo (see there). Everything it starts it stops, also on failure or Ctrl-C."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

import data_service  # noqa: E402
import rabbitmq  # noqa: E402

BIN = os.path.join(ROOT, "build", "mediaworker")
DEMO = os.path.join(ROOT, "build", "demo")
SAMPLES = {
    "clip-720p.mp4": ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=4", "-f", "lavfi", "-i",
                      "sine=frequency=440:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                      "-shortest"],
    "portrait.mov": ["-f", "lavfi", "-i", "testsrc=size=360x640:rate=25:duration=3", "-c:v", "libx264",
                     "-pix_fmt", "yuv420p", "-metadata:s:v", "rotate=90"],
    "clip.webm": ["-f", "lavfi", "-i", "smptebars=size=640x360:rate=25:duration=2", "-c:v", "libvpx-vp9",
                  "-deadline", "realtime", "-b:v", "300k"],
    "tone.wav": ["-f", "lavfi", "-i", "sine=frequency=220:duration=2"],
}


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def make_samples(input_root):
    folder = os.path.join(input_root, "uploads", "42")
    os.makedirs(folder, exist_ok=True)
    names = []
    for name, args in SAMPLES.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"] + args + [path], check=True)
        names.append(os.path.join("uploads", "42", name))
    return names


OPERATIONS = [
    {"type": "probe"},
    {"type": "thumbnail", "at": "50%", "width": 640, "select": "best"},
    {"type": "storyboard", "interval": 1, "tile_width": 160, "columns": 5},
    {"type": "transcode", "preset": "web", "renditions": [720, 360], "hls": True},
]


def results_page(output_root, requests):
    """Writes index.html next to the outputs from the reports the Data Service received."""
    reports = os.path.join(DEMO, "reports.json")
    with open(reports, "w") as f:
        json.dump([r["json"] for r in requests if r["status"] == 200], f)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "results_page.py"), output_root, reports],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(output_root, "index.html")


def serve_page(output_root):
    """Serves the results on loopback until Ctrl-C when a person is watching; prints how otherwise."""
    import functools
    import http.server
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=output_root)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0 if not port_free(8088) else 8088), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    if not sys.stdin.isatty():
        server.server_close()
        print(f"== results page written; view it with: python3 -m http.server -d {os.path.relpath(output_root)} "
              f"-b 127.0.0.1 8088, then open http://127.0.0.1:8088/index.html", flush=True)
        return
    print(f"== results page: {url}   (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main():
    shutil.rmtree(DEMO, ignore_errors=True)
    input_root, output_root = os.path.join(DEMO, "in"), os.path.join(DEMO, "out")
    os.makedirs(input_root)
    port = 5673 if port_free(5673) else rabbitmq.free_port()
    broker = rabbitmq.RabbitMQ(DEMO, port=port)
    ds = data_service.DataService(log_path=os.path.join(DEMO, "reports.jsonl"))
    worker = None
    try:
        print(f"== starting a private RabbitMQ on port {port} (node {broker.node})", flush=True)
        broker.start()
        ds.start()
        print(f"== stand-in Data Service on {ds.url}", flush=True)
        samples = make_samples(input_root)
        env = dict(os.environ, RABBITMQ_URL=broker.url, POSTGRES_DATA_SERVICE_URL=ds.url, MW_INPUT_ROOT=input_root,
                   MW_OUTPUT_ROOT=output_root, MW_SCRATCH_DIR=os.path.join(DEMO, "scratch"), MW_JOB_PROCESSES="2",
                   MW_LOG_FORMAT="text", MW_HTTP_LISTEN=f"127.0.0.1:{rabbitmq.free_port()}")
        ops = json.dumps(OPERATIONS)
        print(f"== mediaworker serve (2 job processes, 4 slots), operations: {', '.join(o['type'] for o in OPERATIONS)}", flush=True)
        worker = subprocess.Popen([BIN, "serve"], env=env, stderr=open(os.path.join(DEMO, "worker.log"), "w"))
        submitted = subprocess.run([BIN, "submit", "--operations", ops, "--user-id", "42"] + samples, env=env,
                                   capture_output=True, text=True, check=True)
        jobs = [json.loads(line) for line in submitted.stdout.splitlines()]
        print(f"== submitted {len(jobs)} jobs", flush=True)
        wanted = {j["job_id"] for j in jobs}
        done = lambda reqs: wanted <= {(r["json"] or {}).get("new_file", {}).get("job_id") for r in reqs
                                       if r["status"] == 200}
        ds.wait_for(done, timeout=300)
        print("== reports received by the Data Service", flush=True)
        for r in ds.requests:
            nf = r["json"]["new_file"]
            probe = nf.get("probe", {})
            video = next((s for s in probe.get("streams", []) if s.get("type") == "video"), {})
            print(f"{r['method']} {r['path']}  X-Request-ID={r['headers'].get('X-Request-ID')}  "
                  f"status={nf.get('status')}  job={nf.get('job_id')}  name={nf.get('name')}  "
                  f"duration={probe.get('format', {}).get('duration')}s  "
                  f"video={'%sx%s %s' % (video['width'], video['height'], video['codec']) if video else '-'}  "
                  f"error={nf.get('error', {}).get('message') if nf.get('error') else None}")
        print("== outputs", flush=True)
        for folder, _, files in sorted(os.walk(output_root)):
            for name in sorted(files):
                path = os.path.join(folder, name)
                print(f"{os.path.relpath(path, ROOT)}  ({os.path.getsize(path)} bytes)")
        metrics_url = f"http://{env['MW_HTTP_LISTEN']}/metrics"
        print(f"== {metrics_url} (non-zero samples)", flush=True)
        time.sleep(0.2)  # the last verdicts are counted just after their reports
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#") and not line.endswith(" 0") and "_bucket" not in line:
                    print(line)
        print(f"== full reports: {os.path.relpath(ds._log_path, ROOT)}; worker log: "
              f"{os.path.relpath(os.path.join(DEMO, 'worker.log'), ROOT)}", flush=True)
        page = results_page(output_root, ds.requests)
        print(f"== results page: {os.path.relpath(page, ROOT)}", flush=True)
    finally:
        if worker and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                code = worker.wait()
            print(f"== worker stopped (exit {code})", flush=True)
        ds.stop()
        broker.stop()
        print("== RabbitMQ stopped", flush=True)
    serve_page(output_root)


if __name__ == "__main__":
    main()
