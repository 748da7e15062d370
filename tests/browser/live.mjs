// Opens livestream's page in Debian's headless Chromium and checks, as a person
// would, that it shows a live picture: the picture (WebRTC video, or the MJPEG
// image it falls back to) loads, two samples a second apart differ, and the
// stats line fills in. Reports which way it plays (`mode`). Prints one JSON
// line; exit 0 = pass.
//
// usage: node live.mjs http://127.0.0.1:PORT/ OUT_DIR
import { launch } from './chromium.mjs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, outDir] = process.argv.slice(2);
// The server's WebRTC candidates are on 127.0.0.1 in the tests.
const browser = await launch(['--allow-loopback-in-peer-connection']);
const result = { ok: false };
try {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
  // Whichever the page shows: the WebRTC video or the MJPEG image.
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    const i = document.getElementById('live');
    return (!v.hidden && v.videoWidth > 0) || (!i.hidden && i.naturalWidth > 0);
  }, null, { timeout: 15000 });
  await page.waitForFunction(() => document.getElementById('stats').textContent.includes('fps'), null, { timeout: 15000 });
  // The picture's pixels, from a canvas (same origin, so readable).
  const sample = () => page.evaluate(() => {
    const v = document.getElementById('video');
    const img = v.hidden ? document.getElementById('live') : v;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth || img.videoWidth;
    c.height = img.naturalHeight || img.videoHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let hash = 0, sum = 0;
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
      hash = (hash * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) | 0;
      sum += d[i] + d[i + 1] + d[i + 2];
      if (i % 97 === 0) colours.add((d[i] >> 4) << 8 | (d[i + 1] >> 4) << 4 | (d[i + 2] >> 4));
    }
    return { width: c.width, height: c.height, hash, mean: sum / (d.length / 4 * 3), colours: colours.size };
  });
  const a = await sample();
  const shown = (await page.locator('#video').isHidden()) ? '#live' : '#video';
  await page.locator(shown).screenshot({ path: join(outDir, 'first.png') });
  await page.waitForTimeout(1000); // "two screenshots a second apart"
  const b = await sample();
  await page.locator(shown).screenshot({ path: join(outDir, 'second.png') });
  await page.screenshot({ path: join(outDir, 'page.png') });
  Object.assign(result, {
    first: a, second: b,
    stats: await page.textContent('#stats'),
    mode: await page.textContent('#mode'),
    title: await page.title(),
  });
  // A picture (not blank, several colours) that changes.
  result.ok = a.width > 0 && a.colours > 4 && a.mean > 10 && a.hash !== b.hash;
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
