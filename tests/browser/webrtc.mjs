// Plays livestream's stream over WebRTC in Debian's headless Chromium, as a
// WHEP client would: POST the page's offer (with the token), play the video
// of the answer, count the frames presented (requestVideoFrameCallback) and
// decoded (getStats), read the server's /stats and /metrics while it plays
// (until its WebRTC viewer has an RTT), then DELETE the session, twice (the
// second must be 404). Waits on events with deadlines. Prints one JSON line;
// exit 0 = pass.
//
// usage: node webrtc.mjs 'http://127.0.0.1:PORT/?token=TOKEN' [MIN_FRAMES] [TIMEOUT_MS]
import { launch } from './chromium.mjs';

const [url, minFrames = '30', timeoutMs = '15000'] = process.argv.slice(2);
const server = new URL(url);
const token = server.searchParams.get('token');
// Loopback candidates: the server's host candidates include 127.0.0.1, and a
// machine may have no other interface.
const browser = await launch(['--allow-loopback-in-peer-connection']);
const result = { ok: false };
try {
  const page = await (await browser.newContext()).newPage();
  // A page of the server's own origin, so that fetch('/whep') is same-origin.
  await page.goto(new URL(`/stats?token=${token ?? ''}`, server).href, { waitUntil: 'commit', timeout: 15000 });
  Object.assign(result, await page.evaluate(async ({ token, minFrames, timeoutMs }) => {
    const out = {};
    const auth = token ? { Authorization: `Bearer ${token}` } : {};
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const started = performance.now();
    const posted = await fetch('/whep', {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...auth },
      body: pc.localDescription.sdp,
    });
    out.postStatus = posted.status;
    out.location = posted.headers.get('Location');
    const answer = await posted.text();
    if (posted.status !== 201) {
      out.error = answer;
      return out;
    }
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    document.body.appendChild(video);
    pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    let presented = 0;
    let firstAt = null;
    const enough = new Promise((resolve) => {
      const onFrame = () => {
        presented += 1;
        if (firstAt === null) firstAt = performance.now();
        if (presented >= minFrames) resolve(true);
        else video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      setTimeout(() => resolve(false), timeoutMs);
    });
    video.play().catch((e) => { out.playError = String(e); });
    out.reached = await enough;
    // The server's side while it plays: /stats until its WebRTC viewer has an
    // RTT and a bitrate (str0m reports once a second, with the browser's
    // latest receiver report), then /metrics whole.
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const stats = await (await fetch('/stats', { headers: auth })).json();
      out.serverViewer = stats.viewers.find((v) => v.protocol === 'webrtc') ?? null;
      const figures = out.serverViewer?.webrtc;
      if ((figures?.rtt_ms != null && figures.bitrate_kbit > 0) || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    out.metrics = await (await fetch('/metrics', { headers: auth })).text();
    out.presented = presented;
    out.firstFrameMs = firstAt === null ? null : Math.round(firstAt - started);
    out.elapsedMs = Math.round(performance.now() - started);
    out.width = video.videoWidth;
    out.height = video.videoHeight;
    out.connectionState = pc.connectionState;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        Object.assign(out, {
          framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
          nackCount: s.nackCount, pliCount: s.pliCount, codecId: s.codecId,
        });
      }
    });
    stats.forEach((s) => {
      if (s.type === 'codec' && s.id === out.codecId) out.codec = `${s.mimeType} ${s.sdpFmtpLine ?? ''}`;
    });
    out.deleteStatus = (await fetch(out.location, { method: 'DELETE', headers: auth })).status;
    out.deleteAgainStatus = (await fetch(out.location, { method: 'DELETE', headers: auth })).status;
    pc.close();
    return out;
  }, { token, minFrames: Number(minFrames), timeoutMs: Number(timeoutMs) }));
  result.ok = result.postStatus === 201 && result.reached === true
    && result.deleteStatus === 200 && result.deleteAgainStatus === 404;
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
