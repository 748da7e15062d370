// Plays a recording in Debian's headless Chromium, as a person opening it
// would: a <video> element on a local page, muted so it may autoplay. Passes
// when playback gets past one second. Prints one JSON line; exit 0 = pass.
//
// usage: node play_mp4.mjs /path/to/recording.mp4
import { launch } from './chromium.mjs';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [file] = process.argv.slice(2);
// The page goes in a folder of its own: the recording's may be a full disk
// (the full-disk test's is).
const page_dir = mkdtempSync(join(tmpdir(), 'play-mp4-'));
const page_path = join(page_dir, 'play.html');
writeFileSync(page_path,
  `<!doctype html><video id="v" src="${pathToFileURL(resolve(file)).href}" muted autoplay playsinline></video>`);
const browser = await launch(['--autoplay-policy=no-user-gesture-required']);
const result = { ok: false };
try {
  const page = await browser.newPage();
  await page.goto(pathToFileURL(page_path).href, { timeout: 15000 });
  result.canPlay = await page.evaluate(() => document.createElement('video').canPlayType('video/mp4; codecs="avc1.42E01E"'));
  try {
    await page.waitForFunction(() => {
      const v = document.getElementById('v');
      return v.error || v.currentTime > 1;
    }, null, { timeout: 15000 });
  } catch (e) {
    result.wait = String(e);
  }
  Object.assign(result, await page.evaluate(() => {
    const v = document.getElementById('v');
    return {
      currentTime: v.currentTime, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
      readyState: v.readyState, mediaError: v.error ? `${v.error.code}: ${v.error.message}` : null,
    };
  }));
  result.ok = !result.mediaError && result.currentTime > 1;
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
  rmSync(page_dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
