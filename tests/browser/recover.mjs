// The page recovers by itself: opens livestream's page in headless Chromium,
// waits until it plays, prints `playing MODE`, then waits (the test restarts
// the server meanwhile) until frames come again after a gap of at least a
// second, with no reload. Prints one JSON line at the end; exit 0 = pass.
//
// usage: node recover.mjs http://127.0.0.1:PORT/?token=TOKEN [TIMEOUT_MS]
import { launch } from './chromium.mjs';

const [url, timeoutMs = '40000'] = process.argv.slice(2);
const browser = await launch(['--allow-loopback-in-peer-connection']);
const result = { ok: false };
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
  // Counts pictures shown, whichever element shows them, and notes gaps.
  await page.evaluate(() => {
    window.shown = { count: 0, last: 0, longestGap: 0, afterGap: 0 };
    const seen = () => {
      const now = performance.now();
      const s = window.shown;
      if (s.last && now - s.last > 1000) { s.longestGap = Math.max(s.longestGap, now - s.last); s.afterGap = 0; }
      if (s.longestGap > 0) s.afterGap += 1;
      s.count += 1;
      s.last = now;
    };
    const video = document.getElementById('video');
    const onFrame = () => { seen(); video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
    document.getElementById('live').addEventListener('load', seen);
  });
  await page.waitForFunction(() => window.shown.count >= 10, null, { timeout: 15000 });
  result.before = await page.textContent('#mode');
  console.log(`playing ${result.before}`);
  await page.waitForFunction(() => window.shown.afterGap >= 10, null, { timeout: Number(timeoutMs) });
  result.after = await page.textContent('#mode');
  result.shown = await page.evaluate(() => window.shown);
  result.ok = true;
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
