#!/usr/bin/env python3
"""Writes the demo's results page: index.html at the output root, one section per job report.

usage: scripts/results_page.py OUTPUT_ROOT REPORTS.json
REPORTS.json is the list of request bodies the Data Service received ({"new_file": ...} each, or the
new_file objects themselves). Output paths in reports are relative to the output root, so the page links
them as they are. hls.js comes from web/node_modules (npm registry), copied next to the page; nothing is
fetched from anywhere else when the page is viewed.
"""
import html
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; background: #fafafa; color: #222; }
section.job { background: white; border: 1px solid #ddd; border-radius: 8px; padding: 1em 1.5em; margin-bottom: 2em; }
.status-processed { color: #2e7d32; } .status-failed { color: #c62828; }
.posters img { max-height: 180px; margin-right: 1em; border: 1px solid #ccc; }
.player { position: relative; display: inline-block; margin: 1em 1em 0 0; vertical-align: top; }
.player video { max-width: 640px; max-height: 360px; display: block; background: black; }
.scrub { height: 18px; background: #ccd; margin-top: 4px; position: relative; cursor: pointer; }
.preview { position: absolute; bottom: 24px; display: none; border: 2px solid white; box-shadow: 0 0 4px #000;
           background-repeat: no-repeat; }
pre.report { background: #f4f4f4; padding: 0.5em; max-height: 240px; overflow: auto; font-size: 11px; }
table.probe td { padding: 0 1em 0 0; }
"""

SCRIPT = """
function parseVtt(text, base) {
  const cues = [];
  const time = s => { const p = s.trim().split(':').map(Number); return p.length === 3 ? p[0]*3600 + p[1]*60 + p[2] : p[0]*60 + p[1]; };
  for (const block of text.split(/\\r?\\n\\r?\\n/)) {
    const lines = block.split(/\\r?\\n/).filter(l => l.trim());
    const at = lines.findIndex(l => l.includes('-->'));
    if (at < 0 || !lines[at + 1]) continue;
    const [start, end] = lines[at].split('-->').map(time);
    const [file, frag] = lines[at + 1].trim().split('#xywh=');
    const [x, y, w, h] = frag.split(',').map(Number);
    cues.push({start, end, url: new URL(file, base).href, x, y, w, h});
  }
  return cues;
}
async function setupScrub(scrub) {
  const base = new URL(scrub.dataset.vtt, location.href);
  const cues = parseVtt(await (await fetch(base)).text(), base);
  scrub.dataset.cues = cues.length;
  const preview = scrub.querySelector('.preview');
  const duration = Number(scrub.dataset.duration);
  scrub.addEventListener('mousemove', ev => {
    const rect = scrub.getBoundingClientRect();
    const t = Math.max(0, Math.min(duration, (ev.clientX - rect.left) / rect.width * duration));
    const cue = cues.find(c => t >= c.start && t < c.end) || cues[cues.length - 1];
    preview.style.display = 'block';
    preview.style.width = cue.w + 'px';
    preview.style.height = cue.h + 'px';
    preview.style.left = Math.min(rect.width - cue.w, Math.max(0, ev.clientX - rect.left - cue.w / 2)) + 'px';
    preview.style.backgroundImage = `url("${cue.url}")`;
    preview.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    preview.dataset.time = t.toFixed(3);
    preview.dataset.tile = `${cue.url.split('/').pop()}#xywh=${cue.x},${cue.y},${cue.w},${cue.h}`;
  });
  scrub.addEventListener('mouseleave', () => { preview.style.display = 'none'; });
}
function setupHls(video) {
  const list = video.parentElement.querySelector('.levels');
  const show = levels => {
    video.dataset.levels = levels.length;
    list.innerHTML = levels.map(l => `<li>${l.width}x${l.height} @ ${Math.round(l.bitrate / 1000)} kb/s</li>`).join('');
  };
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls();
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => { show(data.levels); video.play().catch(() => {}); });
    hls.loadSource(video.dataset.src);
    hls.attachMedia(video);
  } else {
    video.src = video.dataset.src;
  }
}
document.querySelectorAll('.scrub').forEach(setupScrub);
document.querySelectorAll('video.hls').forEach(setupHls);
"""


def esc(value):
    return html.escape(str(value), quote=True)


def probe_rows(report):
    probe = report.get("probe") or {}
    fmt = probe.get("format", {})
    rows = [f"<tr><td>container</td><td>{esc(fmt.get('name', '?'))}, {esc(fmt.get('duration'))} s, "
            f"{esc(fmt.get('size'))} bytes</td></tr>"]
    for stream in probe.get("streams", []):
        if stream["type"] == "video":
            detail = f"{stream['width']}x{stream['height']}, {stream['pix_fmt']}, rotation {stream['rotation']}"
        elif stream["type"] == "audio":
            detail = f"{stream['sample_rate']} Hz, {stream['channel_layout']}"
        else:
            detail = ""
        rows.append(f"<tr><td>{esc(stream['type'])}</td><td>{esc(stream['codec'])} {esc(detail)}</td></tr>")
    return "<table class='probe'>" + "".join(rows) + "</table>"


def job_section(report):
    outputs = report.get("outputs", [])
    by_type = {}
    for output in outputs:
        by_type.setdefault(output["type"], []).append(output)
    duration = (report.get("probe") or {}).get("format", {}).get("duration") or 0
    parts = [f"<section class='job' data-job-id='{esc(report.get('job_id'))}'>",
             f"<h2>{esc(report.get('name'))} <span class='status-{esc(report.get('status'))}'>"
             f"{esc(report.get('status'))}</span></h2>", probe_rows(report)]
    if report.get("error"):
        parts.append(f"<p class='error'>{esc(report['error'].get('code'))}: {esc(report['error'].get('message'))}</p>")
    posters = by_type.get("thumbnail", [])
    if posters:
        parts.append("<div class='posters'>" + "".join(
            f"<img src='{esc(p['path'])}' alt='poster at {esc(p.get('time'))} s' data-expected-width='{p['width']}' "
            f"data-expected-height='{p['height']}' title='t={esc(p.get('time'))} s, score {esc(p.get('score'))}'>"
            for p in posters) + "</div>")
    mp4s = [o for o in outputs if o["path"].endswith(".mp4") and o.get("height")]
    storyboard = (by_type.get("storyboard") or [None])[0]
    for index, mp4 in enumerate(mp4s):
        scrub = ""
        if storyboard and index == 0:
            scrub = (f"<div class='scrub' data-vtt='{esc(storyboard['path'])}' data-duration='{duration}'>"
                     "<div class='preview'></div></div>")
        parts.append(f"<div class='player'><video class='mp4' src='{esc(mp4['path'])}' controls muted "
                     f"preload='auto' data-expected-width='{mp4['width']}' data-expected-height='{mp4['height']}'>"
                     f"</video>{scrub}<div>{esc(os.path.basename(mp4['path']))}: {mp4['width']}x{mp4['height']}</div>"
                     "</div>")
    if storyboard and not mp4s:
        parts.append(f"<div class='player'><div class='scrub' data-vtt='{esc(storyboard['path'])}' "
                     f"data-duration='{duration}' style='width:640px'><div class='preview'></div></div></div>")
    for hls in by_type.get("hls", []):
        renditions = sum(1 for o in mp4s)
        parts.append(f"<div class='player'><video class='hls' data-src='{esc(hls['path'])}' muted controls "
                     f"data-expected-levels='{renditions}'></video><div>HLS ladder:</div><ul class='levels'></ul></div>")
    parts.append(f"<details><summary>Report received by the Data Service</summary><pre class='report'>"
                 f"{esc(json.dumps(report, indent=2))}</pre></details></section>")
    return "\n".join(parts)


def main():
    output_root, reports_path = sys.argv[1], sys.argv[2]
    with open(reports_path) as f:
        reports = [r.get("new_file", r) for r in json.load(f)]
    hls_js = os.path.join(ROOT, "web", "node_modules", "hls.js", "dist", "hls.min.js")
    if os.path.exists(hls_js):
        shutil.copy(hls_js, os.path.join(output_root, "hls.min.js"))
    else:
        print("note: hls.js is not installed (cd web && npm ci): the page's HLS players will not play",
              file=sys.stderr)
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>mediaworker results</title>",
            f"<style>{STYLE}</style><script src='hls.min.js'></script></head><body>",
            f"<h1>mediaworker results</h1><p>{len(reports)} jobs</p>"]
    page += [job_section(r) for r in reports]
    page.append(f"<script>{SCRIPT}</script></body></html>")
    with open(os.path.join(output_root, "index.html"), "w") as f:
        f.write("\n".join(page))
    print(os.path.join(output_root, "index.html"))


if __name__ == "__main__":
    main()
