// Follows livestream's own page (`/`) in Debian's headless Chromium while the
// test changes the link under it: once the page plays in MODE, prints one
// JSON line every half second with what the page shows (its mode line and
// status line, the stamps it read, the picture's size, a hash of the
// picture) and, over WebRTC,
// getStats (frames decoded, bytes received, keyframe requests), for SECONDS.
// The test reads the lines as they come and judges them. Exit 0 = it played
// in MODE throughout.
//
// usage: node follow.mjs 'http://HOST:PORT/?token=TOKEN' SECONDS [MODE]
//   MODE: webrtc (default) or mjpeg
import { launch } from './chromium.mjs';

const [url, seconds = '30', want = 'webrtc'] = process.argv.slice(2);
const browser = await launch(['--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required']);
let ok = false;
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
  await page.waitForFunction((want) => window.livestream && window.livestream.mode() === want,
    want, { timeout: 15000 });
  const started = Date.now();
  ok = true;
  while (Date.now() - started < Number(seconds) * 1000) {
    const line = await page.evaluate(async () => {
      const img = document.getElementById('live');
      const out = { mode: window.livestream.mode(), modeText: document.getElementById('mode').textContent,
        status: document.getElementById('stats').textContent, seqs: window.livestream.seqs().slice(-40),
        shownPerSecond: window.livestream.figures()?.fps ?? 0 };
      if (out.mode === 'mjpeg') Object.assign(out, { width: img.naturalWidth, height: img.naturalHeight });
      // A hash of the picture shown, made small: it changes when the picture
      // does, for content without the test pattern's stamps (a camera).
      const shownEl = out.mode === 'mjpeg' ? img : document.getElementById('video');
      try {
        const c = document.createElement('canvas');
        c.width = 32; c.height = 18;
        const g = c.getContext('2d', { willReadFrequently: true });
        g.drawImage(shownEl, 0, 0, 32, 18);
        let h = 0;
        for (const v of g.getImageData(0, 0, 32, 18).data) h = (Math.imul(h, 31) + v) >>> 0;
        out.pictureHash = h;
      } catch (e) {
        out.pictureHash = null;
      }
      const pc = window.livestream.pc();
      if (!pc) return out;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          Object.assign(out, { decoded: s.framesDecoded, width: s.frameWidth, height: s.frameHeight,
            bytes: s.bytesReceived, plis: s.pliCount, nacks: s.nackCount, lost: s.packetsLost });
        }
      });
      return out;
    });
    line.t = (Date.now() - started) / 1000;
    if (line.mode !== want) ok = false;
    console.log(JSON.stringify(line));
    await new Promise((resolve) => { setTimeout(resolve, 500); });
  }
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
  ok = false;
} finally {
  await browser.close();
}
process.exit(ok ? 0 : 1);
