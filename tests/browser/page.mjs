// Watches livestream's own page (`/`) in Debian's headless Chromium: waits
// until it plays in the expected mode, then for SECONDS reads what the page
// measured itself (window.livestream: the test pattern's stamps read from the
// picture, latency capture → displayed), WebRTC's getStats (frames decoded,
// codec) and two screenshots. Waits on events with deadlines. Prints one JSON
// line; exit 0 = it played in MODE (the test judges the figures).
//
// usage: node page.mjs 'http://HOST:PORT/?token=TOKEN' MODE SECONDS [PAGES]
//   MODE: webrtc or mjpeg (the mode the page must settle on within 10 s)
//   PAGES: pages open at once in one browser (default 1); figures for each
import { launch } from './chromium.mjs';

const [url, want = 'webrtc', seconds = '3', pages = '1'] = process.argv.slice(2);
const browser = await launch(['--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required']);
const result = { ok: false, pages: [] };

async function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.livestream.pc();
    if (!pc) return null;
    const out = {};
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        Object.assign(out, {
          framesDecoded: s.framesDecoded, framesDropped: s.framesDropped, codecId: s.codecId,
          frameWidth: s.frameWidth, frameHeight: s.frameHeight, nackCount: s.nackCount, pliCount: s.pliCount,
        });
      }
    });
    stats.forEach((s) => { if (s.type === 'codec' && s.id === out.codecId) out.codec = s.mimeType; });
    return out;
  });
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const opened = [];
  const started = Date.now();
  for (let i = 0; i < Number(pages); i += 1) {
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
    opened.push(page);
  }
  for (const page of opened) {
    await page.waitForFunction((want) => window.livestream && window.livestream.mode() === want
      && window.livestream.figures() !== null, want, { timeout: 10000 });
  }
  result.settledMs = Date.now() - started;
  const before = await Promise.all(opened.map(async (page) => ({
    stats: await inbound(page), seqs: await page.evaluate(() => window.livestream.seqs().length),
    shot: await page.screenshot(),
  })));
  const t0 = Date.now();
  await new Promise((resolve) => { setTimeout(resolve, Number(seconds) * 1000); });
  for (const [i, page] of opened.entries()) {
    const after = await inbound(page);
    const elapsed = (Date.now() - t0) / 1000;
    const shot = await page.screenshot();
    const own = await page.evaluate(() => ({
      mode: window.livestream.mode(), text: document.getElementById('mode').textContent,
      status: document.getElementById('stats').textContent,
      figures: window.livestream.figures(), seqs: window.livestream.seqs(), clock: window.livestream.clock(),
    }));
    const seqs = own.seqs.slice(before[i].seqs);
    const out = {
      mode: own.mode, modeText: own.text, status: own.status, clock: own.clock,
      latency: own.figures, stamps: seqs.length,
      // Never backwards. The same stamp twice is the page's reading, not the
      // stream: it reads the stamp by drawing the video element at the frame
      // callback, and under load the element may already show the next frame,
      // which the next callback then reads again.
      stampsInOrder: seqs.every((s, j) => j === 0 || s >= seqs[j - 1]),
      stampsRepeated: seqs.filter((s, j) => j > 0 && s === seqs[j - 1]).length,
      screenshotsDiffer: !shot.equals(before[i].shot),
    };
    if (after && before[i].stats) {
      out.codec = after.codec;
      out.size = `${after.frameWidth}x${after.frameHeight}`;
      out.decodedPerSecond = (after.framesDecoded - before[i].stats.framesDecoded) / elapsed;
      out.framesDropped = after.framesDropped;
      out.nacks = after.nackCount;
      out.plis = after.pliCount;
    }
    result.pages.push(out);
  }
  result.ok = result.pages.every((p) => p.mode === want);
} catch (e) {
  result.error = String(e);
  try {
    result.modes = await Promise.all(browser.contexts()[0].pages().map((p) => p.evaluate(() => [
      window.livestream && window.livestream.mode(), document.getElementById('mode').textContent,
      document.getElementById('state').textContent])));
  } catch (_) { /* the browser is gone */ }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
