// The browser benchmark (docs/benchmarks.md, "Browsers: WebRTC against
// MJPEG"): livestream's own page in Debian's headless Chromium, on loopback.
//
// 1. Latency, capture → displayed, as the page measures it (the test
//    pattern's stamps, the server's clock over GET /clock), over WebRTC and
//    over MJPEG (`?mode=mjpeg`) against the same server, at 720p30 and 1080p30.
// 2. Server CPU with WebRTC viewers on photographic content
//    (`synthetic-camera`, 720p30): the whole process per second with one page
//    and with four, and the `webrtc` thread's time per frame per viewer
//    (packetising and SRTP), from /proc/PID/task/TID/schedstat (ns).
//
// Every figure is the median of RUNS runs of SECONDS each. Prints Markdown
// tables. Run it from the repository with a release binary:
//
//   cargo build --release && node tests/browser/bench.mjs target/release/livestream [SECONDS] [RUNS] [SERVE ARGS...]
//
// SERVE ARGS go to every `serve` (an A/B: `--set serve.adapt="off"`).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { readFileSync, readdirSync } from 'node:fs';
import { launch } from './chromium.mjs';

const [given, seconds = '10', runs = '3', ...extra] = process.argv.slice(2);
// (Its servers run in /tmp: the path as given, from here.)
const binary = given && resolve(given);
if (!given) {
  console.error('usage: node tests/browser/bench.mjs BINARY [SECONDS] [RUNS] [SERVE ARGS...]');
  process.exit(2);
}
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

// `serve` on a free loopback port; resolves with its process and address.
function serve(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--set', 'serve.auth="none"', ...extra, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/tmp' });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20000);
    // Ready once it listens and WebRTC is up.
    const ready = () => {
      const m = out.match(/listening on (\S+)/);
      if (m && err.includes('WebRTC (POST /whep)')) {
        clearTimeout(timer);
        resolve({ proc, addr: m[1] });
      }
    };
    proc.stderr.on('data', (d) => { err += d; ready(); });
    proc.stdout.on('data', (d) => { out += d; ready(); });
    proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

function stop({ proc }) {
  return new Promise((resolve) => { proc.on('exit', resolve); proc.kill('SIGTERM'); });
}

// CPU time of the whole process and of its `webrtc` thread, ns.
function cpu(pid) {
  let all = 0;
  let webrtc = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      all += ns;
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === 'webrtc') webrtc += ns;
    } catch (e) { /* a thread that ended */ }
  }
  return { all, webrtc };
}

async function webrtcFramesSent(addr) {
  const s = await (await fetch(`http://${addr}/stats`)).json();
  return s.viewers.filter((v) => v.protocol === 'webrtc').reduce((n, v) => n + v.sent, 0);
}

// Opens `pages` pages of `url`, waits until each plays in `mode`, then
// measures for `seconds`.
async function watch(browser, url, mode, pages, server) {
  const context = await browser.newContext();
  const opened = [];
  for (let i = 0; i < pages; i += 1) {
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'commit', timeout: 15000 });
    opened.push(page);
  }
  for (const page of opened) {
    await page.waitForFunction((m) => window.livestream && window.livestream.mode() === m
      && window.livestream.figures() !== null, mode, { timeout: 15000 });
  }
  // Let the start (keyframe, jitter buffer) pass.
  await new Promise((r) => { setTimeout(r, 2000); });
  const pid = server.proc.pid;
  const c0 = cpu(pid);
  const f0 = await webrtcFramesSent(server.addr);
  const t0 = performance.now();
  const latencies = [];
  const p95s = [];
  const fps = [];
  const end = t0 + Number(seconds) * 1000;
  // The page keeps 3 s of figures: sample every 3 s.
  while (performance.now() < end) {
    await new Promise((r) => { setTimeout(r, Math.min(3000, end - performance.now())); });
    for (const page of opened) {
      const f = await page.evaluate(() => window.livestream.figures());
      if (f) { latencies.push(f.p50); p95s.push(f.p95); fps.push(f.fps); }
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  const c1 = cpu(pid);
  const f1 = await webrtcFramesSent(server.addr);
  await context.close();
  const frames = f1 - f0;
  return {
    p50: median(latencies),
    p95: median(p95s),
    fps: median(fps),
    cpuPerSecondMs: (c1.all - c0.all) / 1e6 / elapsed,
    webrtcUsPerViewerFrame: frames > 0 ? (c1.webrtc - c0.webrtc) / 1e3 / frames : NaN,
    sentFpsPerViewer: frames / elapsed / pages,
  };
}

const browser = await launch(['--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required']);
const n = Number(runs);
try {
  console.log(`\nLatency, capture → displayed (test pattern, ${seconds} s a run, median of ${n} runs)\n`);
  console.log('| size | mode | latency p50 (ms) | p95 (ms) | fps shown |');
  console.log('|------|------|------------------|----------|-----------|');
  for (const [w, h] of [[1280, 720], [1920, 1080]]) {
    const server = await serve(['--codec', 'h264', '--width', `${w}`, '--height', `${h}`, '--fps', '30']);
    for (const mode of ['webrtc', 'mjpeg']) {
      const rows = [];
      for (let i = 0; i < n; i += 1) {
        const q = mode === 'mjpeg' ? '?mode=mjpeg' : '';
        rows.push(await watch(browser, `http://${server.addr}/${q}`, mode, 1, server));
      }
      console.log(`| ${w}x${h} | ${mode} | ${median(rows.map((r) => r.p50)).toFixed(1)} | `
        + `${median(rows.map((r) => r.p95)).toFixed(1)} | ${median(rows.map((r) => r.fps))} |`);
    }
    await stop(server);
  }

  console.log(`\nServer CPU with WebRTC pages (synthetic-camera 1280x720 at 30 fps, ${seconds} s a run, median of ${n} runs)\n`);
  console.log('| pages | server CPU (ms/s) | webrtc thread per viewer per frame (µs) | fps sent to each | latency p50 (ms) | fps shown |');
  console.log('|-------|-------------------|------------------------------------------|------------------|------------------|-----------|');
  const server = await serve(['--source', 'synthetic-camera', '--codec', 'h264', '--width', '1280', '--height', '720', '--fps', '30']);
  const cpus = {};
  for (const pages of [1, 4]) {
    const rows = [];
    for (let i = 0; i < n; i += 1) rows.push(await watch(browser, `http://${server.addr}/`, 'webrtc', pages, server));
    cpus[pages] = median(rows.map((r) => r.cpuPerSecondMs));
    console.log(`| ${pages} | ${cpus[pages].toFixed(0)} | ${median(rows.map((r) => r.webrtcUsPerViewerFrame)).toFixed(0)} | `
      + `${median(rows.map((r) => r.sentFpsPerViewer)).toFixed(1)} | `
      + `${median(rows.map((r) => r.p50)).toFixed(1)} | ${median(rows.map((r) => r.fps))} |`);
  }
  console.log(`\nServer CPU, four pages against one: ${(cpus[4] / cpus[1]).toFixed(2)}x`);
  await stop(server);
} finally {
  await browser.close();
}
