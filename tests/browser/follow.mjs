// Follows livestream's own page (`/`) in Debian's headless Chromium while the
// test changes the link under it: once the page plays over WebRTC, prints one
// JSON line every half second with WebRTC's getStats (frames decoded, the
// picture's size, bytes received, keyframe requests) and what the page shows
// (its mode line and status line), for SECONDS. The test reads the lines as
// they come and judges them. Exit 0 = it played over WebRTC throughout.
//
// usage: node follow.mjs 'http://HOST:PORT/?token=TOKEN' SECONDS
import { launch } from './chromium.mjs';

const [url, seconds = '30'] = process.argv.slice(2);
const browser = await launch(['--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required']);
let ok = false;
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
  await page.waitForFunction(() => window.livestream && window.livestream.mode() === 'webrtc',
    null, { timeout: 15000 });
  const started = Date.now();
  ok = true;
  while (Date.now() - started < Number(seconds) * 1000) {
    const line = await page.evaluate(async () => {
      const out = { mode: window.livestream.mode(), modeText: document.getElementById('mode').textContent,
        status: document.getElementById('stats').textContent, seqs: window.livestream.seqs().slice(-40) };
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
    if (line.mode !== 'webrtc') ok = false;
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
