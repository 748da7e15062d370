// Watches a Janus streaming mountpoint (one that pulls livestream's RTSP) in
// Debian's headless Chromium: Janus's HTTP API is driven from here (create a
// session, attach the streaming plugin, `watch`, answer its offer, `start`),
// the page plays the WebRTC video, counts frames presented
// (requestVideoFrameCallback) and decoded (getStats), and saves one picture
// as PNG for the test to read its stamp. Waits on events with deadlines.
// Prints one JSON line; exit 0 = pass.
//
// usage: node janus.mjs http://127.0.0.1:PORT/janus MOUNTPOINT_ID PNG_PATH [MIN_FRAMES] [TIMEOUT_MS]
import { writeFileSync } from 'node:fs';
import { launch } from './chromium.mjs';

const [api, mountpoint, pngPath, minFrames = '30', timeoutMs = '20000'] = process.argv.slice(2);
const deadline = Date.now() + Number(timeoutMs);
const tx = () => Math.random().toString(36).slice(2);
async function call(path, body) {
  const r = await fetch(`${api}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ transaction: tx(), ...body }),
  });
  return r.json();
}
// Janus answers plugin messages asynchronously: the offer comes by long poll.
async function nextEvent(session) {
  while (Date.now() < deadline) {
    const r = await fetch(`${api}/${session}?maxev=1&rid=${Date.now()}`);
    const events = [].concat(await r.json());
    for (const e of events) {
      if (e.jsep || (e.janus === 'event' && e.plugindata)) return e;
    }
  }
  throw new Error('no event from Janus in time');
}

const result = { ok: false };
const browser = await launch(['--allow-loopback-in-peer-connection']);
try {
  const session = (await call('', { janus: 'create' })).data.id;
  const handle = (await call(`/${session}`, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data.id;
  await call(`/${session}/${handle}`, { janus: 'message', body: { request: 'watch', id: Number(mountpoint) } });
  let offer;
  while (!offer) {
    const e = await nextEvent(session);
    if (e.jsep) offer = e.jsep;
    else if (e.plugindata?.data?.error) throw new Error(e.plugindata.data.error);
  }
  const page = await (await browser.newContext()).newPage();
  await page.setContent('<video muted playsinline></video>');
  const answer = await page.evaluate(async (offer) => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    const video = document.querySelector('video');
    pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); video.play(); };
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    // The whole answer at once, candidates included (no trickle).
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
      setTimeout(resolve, 3000);
    });
    return { type: 'answer', sdp: pc.localDescription.sdp };
  }, offer);
  await call(`/${session}/${handle}`, { janus: 'message', body: { request: 'start' }, jsep: answer });
  Object.assign(result, await page.evaluate(async ({ minFrames, left }) => {
    const out = {};
    const video = document.querySelector('video');
    let presented = 0;
    out.reached = await new Promise((resolve) => {
      const onFrame = () => {
        presented += 1;
        if (presented >= minFrames) resolve(true);
        else video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      setTimeout(() => resolve(false), left);
    });
    out.presented = presented;
    out.width = video.videoWidth;
    out.height = video.videoHeight;
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    out.png = canvas.toDataURL('image/png');
    const stats = await window.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded = s.framesDecoded;
        out.codecId = s.codecId;
      }
    });
    stats.forEach((s) => { if (s.type === 'codec' && s.id === out.codecId) out.codec = s.mimeType; });
    return out;
  }, { minFrames: Number(minFrames), left: Math.max(1000, deadline - Date.now()) }));
  if (result.png) {
    writeFileSync(pngPath, Buffer.from(result.png.split(',')[1], 'base64'));
    delete result.png;
  }
  await call(`/${session}`, { janus: 'destroy' });
  result.ok = result.reached === true;
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
