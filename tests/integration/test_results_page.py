"""The results page in a real browser: headless Chromium (Debian's package) driven by playwright-core.

Jobs with every browser-facing operation (poster, storyboard, web MP4 renditions, HLS) run on a landscape
clip and on a portrait phone clip; the page built from their reports is served on loopback and
tests/browser/check_results.mjs checks images, MP4 playback size, the HLS ladder, and storyboard hovering.
"""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

from mwtest import check, finish, fresh_dir, media, run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OPERATIONS = [
    {"type": "probe"},
    {"type": "thumbnail", "at": "50%", "width": 320, "select": "exact"},
    {"type": "storyboard", "interval": 1, "tile_width": 160, "columns": 4},
    {"type": "transcode", "preset": "web", "renditions": [360, 240], "hls": True},
]


def make_uploads(root):
    os.makedirs(os.path.join(root, "5"), exist_ok=True)
    landscape = media("page-landscape.mp4", [
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"])
    portrait = media("page-portrait.mp4", ["-i", landscape, "-c", "copy", "-metadata:s:v:0", "rotate=90"])
    for name, path in (("landscape.mp4", landscape), ("portrait.mp4", portrait)):
        target = os.path.join(root, "5", name)
        if not os.path.exists(target):
            os.link(path, target)


def run_jobs(work, root, out):
    reports = []
    for name in ("landscape.mp4", "portrait.mp4"):
        job = os.path.join(work, f"{name}.json")
        with open(job, "w") as f:
            json.dump({"user_id": 5, "job_id": name.split(".")[0], "file_info": {"path": f"5/{name}", "name": name},
                       "operations": OPERATIONS}, f)
        proc = run(["run", job], env={"MW_INPUT_ROOT": root, "MW_OUTPUT_ROOT": out}, timeout=300)
        check(proc.returncode == 0, f"{name}: job succeeds ({proc.stderr[-800:]})")
        reports.append(json.loads(proc.stdout))
    return reports


def serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    if not os.path.isdir(os.path.join(ROOT, "web", "node_modules", "playwright-core")):
        print("SKIPPED: web/node_modules lacks playwright-core (npm ci failed; see scripts/test's warning)")
        sys.exit(77)
    work = fresh_dir("results-page")
    root, out = os.path.join(work, "uploads"), os.path.join(work, "outputs")
    os.makedirs(out)
    make_uploads(root)
    reports = run_jobs(work, root, out)
    portrait = reports[1]["new_file"]
    mp4s = [o for o in portrait["outputs"] if o["path"].endswith(".mp4")]
    check(mp4s and all(o["height"] > o["width"] for o in mp4s), f"portrait source gives portrait MP4s: {mp4s}")
    with open(os.path.join(work, "reports.json"), "w") as f:
        json.dump(reports, f)
    subprocess.run([os.path.join(ROOT, "scripts", "results_page.py"), out, os.path.join(work, "reports.json")],
                   check=True, stdout=subprocess.DEVNULL)
    server = serve(out)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    proc = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "check_results.mjs"), url],
                          capture_output=True, text=True, timeout=240)
    server.shutdown()
    print(proc.stderr[-3000:])
    check(proc.returncode == 0, "browser checks pass")
    try:
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        check(False, f"browser check printed no summary: {proc.stdout[-500:]}")
        return finish()
    print("browser summary:", summary)
    check(summary["images"] >= 2, "posters checked")
    check(summary["mp4"] >= 4, "every MP4 rendition checked")
    check(summary["hls"] == 2, "both HLS ladders checked")
    check(summary["storyboard_hovers"] >= 6, "storyboard hovered on both jobs")
    finish()


if __name__ == "__main__":
    main()
