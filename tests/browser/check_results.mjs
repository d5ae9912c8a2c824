// Opens the results page in headless Chromium and checks what a viewer would see: every image loaded at
// its reported size, every MP4 decodable at its reported size, every HLS ladder listed and playing, and the
// storyboard tile under the pointer being the one the WebVTT names for that time.
// usage: node tests/browser/check_results.mjs URL        prints a JSON summary, exits 1 on any failure
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const url = process.argv[2];
const failures = [];
const summary = { images: 0, mp4: 0, hls: 0, storyboard_hovers: 0 };
const fail = message => { failures.push(message); console.error('FAIL: ' + message); };

function vttCueAt(text, t) {
  const seconds = s => s.trim().split(':').map(Number).reduce((acc, v) => acc * 60 + v, 0);
  const cues = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter(l => l.trim());
    const at = lines.findIndex(l => l.includes('-->'));
    if (at >= 0 && lines[at + 1]) {
      const [start, end] = lines[at].split('-->').map(seconds);
      cues.push({ start, end, target: lines[at + 1].trim() });
    }
  }
  const cue = cues.find(c => t >= c.start && t < c.end);
  return cue ? cue.target : null;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', e => fail('page error: ' + e.message));
  await page.goto(url, { waitUntil: 'load' });

  for (const img of await page.$$('img')) {
    await img.evaluate(el => el.complete || new Promise(r => { el.onload = el.onerror = r; }));
    const got = await img.evaluate(el => ({ w: el.naturalWidth, h: el.naturalHeight, src: el.getAttribute('src'),
      ew: Number(el.dataset.expectedWidth), eh: Number(el.dataset.expectedHeight) }));
    summary.images++;
    if (got.w !== got.ew || got.h !== got.eh) fail(`image ${got.src}: ${got.w}x${got.h}, expected ${got.ew}x${got.eh}`);
  }

  for (const video of await page.$$('video.mp4')) {
    const got = await video.evaluate(el => new Promise(resolve => {
      const done = () => resolve({ state: el.readyState, w: el.videoWidth, h: el.videoHeight, src: el.getAttribute('src'),
        ew: Number(el.dataset.expectedWidth), eh: Number(el.dataset.expectedHeight), error: el.error && el.error.message });
      if (el.readyState >= 2) return done();
      el.addEventListener('loadeddata', done);
      el.addEventListener('error', done);
      setTimeout(done, 20000);
    }));
    summary.mp4++;
    if (got.state < 2) fail(`mp4 ${got.src}: readyState ${got.state} (${got.error || 'no error'})`);
    else if (got.w !== got.ew || got.h !== got.eh) fail(`mp4 ${got.src}: ${got.w}x${got.h}, expected ${got.ew}x${got.eh}`);
  }

  for (const video of await page.$$('video.hls')) {
    const got = await video.evaluate(el => new Promise(resolve => {
      const started = Date.now();
      const poll = () => {
        if ((el.dataset.levels && el.currentTime > 0.5) || Date.now() - started > 25000)
          return resolve({ levels: Number(el.dataset.levels || 0), expected: Number(el.dataset.expectedLevels),
                           time: el.currentTime, src: el.dataset.src, error: el.error && el.error.message });
        setTimeout(poll, 200);
      };
      poll();
    }));
    summary.hls++;
    if (got.levels !== got.expected) fail(`hls ${got.src}: ${got.levels} levels listed, expected ${got.expected}`);
    if (!(got.time > 0.5)) fail(`hls ${got.src}: did not play (currentTime ${got.time}, ${got.error || 'no error'})`);
  }

  for (const scrub of await page.$$('.scrub')) {
    await page.waitForFunction(el => Number(el.dataset.cues) > 0, scrub, { timeout: 10000 });
    await scrub.scrollIntoViewIfNeeded();
    const box = await scrub.boundingBox();
    const info = await scrub.evaluate(async el => ({ duration: Number(el.dataset.duration),
      vtt: await (await fetch(new URL(el.dataset.vtt, location.href))).text() }));
    for (const fraction of [0.1, 0.5, 0.9]) {
      await scrub.hover({ position: { x: box.width * fraction, y: box.height / 2 } });
      const shown = await scrub.evaluate(el => {
        const p = el.querySelector('.preview');
        return { tile: p.dataset.tile, time: Number(p.dataset.time), visible: getComputedStyle(p).display !== 'none',
                 image: getComputedStyle(p).backgroundImage };
      });
      const expected = vttCueAt(info.vtt, shown.time);
      const pointerTime = fraction * info.duration;
      summary.storyboard_hovers++;
      if (!shown.visible) fail(`storyboard: preview hidden at ${fraction}`);
      if (!(info.duration > 0)) fail(`storyboard: duration ${info.duration} is not a positive number`);
      else if (!(Math.abs(shown.time - pointerTime) <= 0.02 * info.duration))
        fail(`storyboard at ${fraction}: page shows time ${shown.time}s, pointer is at ${pointerTime}s of ${info.duration}s`);
      if (expected === null) fail(`storyboard at ${shown.time}s: no VTT cue covers that time`);
      else if (!expected.endsWith(shown.tile)) fail(`storyboard at ${shown.time}s: shows ${shown.tile}, VTT names ${expected}`);
      const sprite = shown.image.replace(/^url\("?/, '').replace(/"?\)$/, '');
      const status = await page.evaluate(async u => (await fetch(u)).status, sprite);
      if (status !== 200) fail(`storyboard sprite ${sprite}: HTTP ${status}`);
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...summary, failures }));
process.exit(failures.length ? 1 : 0);
