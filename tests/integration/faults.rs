//! Network faults (issue 19), on a veth pair between two network namespaces
//! (`NetnsPair`): the link taken away for 10 s and given back, a viewer that
//! vanishes without a FIN, and packets lost at random (iptables' statistic
//! match: `netem` is not in every kernel). Every client here is a real one:
//! the viewer library, headless Chromium on the server's own page, ffmpeg.

use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::sources::test_pattern::read_stamp;

use crate::adapt::{assert_stamps_in_order, follow_page, watch_reconnecting, ShownLog};
use crate::util::{NetnsPair, SERVE_PLAINTEXT, VIEW_PLAINTEXT};
use crate::wait::{poll_until, wait_until, Lazy};

/// The test pattern is captured whether anyone watches or not, so its frame
/// numbers (the stamps) keep counting through a fault.
const CAPTURE_ALWAYS: &str = "--set=serve.capture=\"always\"";

/// What a client showed, as the test saw it come: when, and the frame number
/// stamped in it (`None`: a picture without a whole stamp, a corrupt one).
type Seen = Vec<(Instant, Option<u64>)>;

/// One JSON line of `tests/browser/follow.mjs`, with when it came.
type PageLines = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// A page in headless Chromium in the viewer's namespace, its lines read as
/// they come.
struct Page {
    child: Child,
    lines: PageLines,
    reader: Option<JoinHandle<()>>,
}

impl Page {
    fn follow(net: &NetnsPair, url: &str, seconds: u32, mode: &str) -> Page {
        let mut child = follow_page(net, url, seconds, mode);
        let lines = PageLines::default();
        let out = child.stdout.take().unwrap();
        let into = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                into.lock().unwrap().push((Instant::now(), v));
            }
        });
        Page {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The newest stamp of each line (the page reads them from its pictures;
    /// one it cannot read is not listed, so a corrupt picture is not seen here).
    fn seen(&self) -> Seen {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|(at, l)| Some((*at, Some(l["seqs"].as_array()?.last()?.as_u64()?))))
            .collect()
    }

    fn values(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|(_, v)| v.clone()).collect()
    }

    fn tail(&self) -> String {
        let v = self.values();
        let tail: Vec<String> = v
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(|l| l.to_string())
            .collect();
        tail.join("\n")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ffmpeg playing RTSP in namespace `ns`, each picture it decodes read back
/// as grey (its stamp) as it comes.
struct Ffmpeg {
    child: Child,
    seen: Arc<Mutex<Seen>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Ffmpeg {
    /// `transport`: `udp` or `tcp`. ffmpeg gives up on a server silent for
    /// its `-timeout`: 30 s here, longer than any fault of these tests.
    fn play(ns: &str, url: &str, transport: &str, (w, h): (u32, u32)) -> Ffmpeg {
        let ffmpeg = crate::stream::which("ffmpeg")
            .expect("ffmpeg is needed: the README's test command installs it");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(ffmpeg)
            .args(["-nostdin", "-v", "error", "-rtsp_transport", transport])
            .args([
                "-timeout",
                "30000000",
                "-i",
                url,
                "-fps_mode",
                "passthrough",
            ])
            .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let into = seen.clone();
        let pictures = std::thread::spawn(move || {
            let info = FrameInfo::packed(PixelFormat::Grey, w, h).unwrap();
            let mut frame = Frame {
                info,
                seq: 0,
                capture_us: 0,
                data: vec![0; info.byte_len()],
            };
            while out.read_exact(&mut frame.data).is_ok() {
                let stamp = read_stamp(&frame).map(|s| s.seq);
                into.lock().unwrap().push((Instant::now(), stamp));
            }
        });
        let err = child.stderr.take().unwrap();
        let into = stderr.clone();
        let said = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = into.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Ffmpeg {
            child,
            seen,
            stderr,
            readers: vec![pictures, said],
        }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn native_seen(shown: &ShownLog) -> Seen {
    let shown = shown.lock().unwrap();
    shown
        .iter()
        .map(|s| (s.at, s.stamped.then_some(s.seq)))
        .collect()
}

/// Pictures with at least two different stamps came in the last 1.5 s.
fn playing(seen: &Seen) -> bool {
    let since = Instant::now() - Duration::from_millis(1500);
    let mut recent = seen
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, s)| *s);
    recent
        .next()
        .is_some_and(|first| recent.any(|other| other != first))
}

/// The newest stamp seen before `at`.
fn newest_before(seen: &Seen, at: Instant) -> Option<u64> {
    seen.iter()
        .filter(|(t, _)| *t < at)
        .filter_map(|(_, s)| *s)
        .max()
}

/// When the first picture captured after the link came back was seen: one
/// stamped at least 9 s (270 frames at 30 fps) after the newest seen before
/// the link went, which is a picture of after the 10 s without it.
fn resumed(seen: &Seen, before: u64) -> Option<Instant> {
    seen.iter()
        .find(|(_, s)| s.is_some_and(|s| s >= before + 270))
        .map(|(at, _)| *at)
}

/// Pictures not whole, and places where a stamp did not follow the one
/// before it (a picture repeated or going back), of the pictures in `seen`.
fn damage(seen: &Seen) -> (usize, Vec<(u64, u64)>) {
    let corrupt = seen.iter().filter(|(_, s)| s.is_none()).count();
    let stamps: Vec<u64> = seen.iter().filter_map(|(_, s)| *s).collect();
    let disorder = stamps
        .windows(2)
        .filter(|w| w[1] <= w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    (corrupt, disorder)
}

const RTSP_UDP: &str = "ffmpeg (RTSP/UDP)";

/// Over RTSP/UDP, pictures may be damaged for this long after the first new
/// one. ffmpeg sends no NACK nor PLI, and nothing tells the server that what
/// it sent while the link was away was lost, so the P-frames that follow
/// the link's return refer to pictures ffmpeg never got: it shows them
/// concealed (unreadable, or an old picture again) until the next keyframe,
/// at most one keyframe interval (2 s) later. Measured: about 13 pictures.
/// A known gap (issue 19). Tried (2026-12-02, not kept): holding P-frames
/// back from a UDP client whose receiver reports stopped, judged by their
/// cadence. ffmpeg reports once for each 280 KB or so it receives: for this
/// 0.25 Mbit/s stream, once in 10 s, so there is no cadence to miss within
/// the outage.
const RTSP_UDP_SETTLES: Duration = Duration::from_millis(2100);

/// A page reads the same newest stamp twice in a row when its picture did
/// not change between two looks: there, only a stamp going back counts.
fn real_disorder(name: &str, disorder: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    disorder
        .into_iter()
        .filter(|(a, b)| b < a || !name.ends_with("page"))
        .collect()
}

/// The link goes for 10 s and comes back: a native viewer, an MJPEG page, a
/// WebRTC page and ffmpeg over RTSP (UDP) each show new pictures again by
/// themselves within 3 s of its return, in order and none corrupt (but for
/// RTSP/UDP's first [`RTSP_UDP_SETTLES`]). (A page is looked at every half
/// second: its times are late by up to that.)
#[test]
fn after_10_s_without_a_link_every_client_resumes_within_3_s() {
    let net = NetnsPair::new(None);
    let addr = "10.231.0.1:7896";
    let mut server = net.serve(addr, &["--codec", "h264", CAPTURE_ALWAYS, SERVE_PLAINTEXT]);
    let stop = Arc::new(AtomicBool::new(false));
    let (native, native_thread) = watch_reconnecting(&net.viewer_ns, addr, &stop);
    let mut mjpeg = Page::follow(&net, &format!("http://{addr}/?mode=mjpeg"), 60, "mjpeg");
    let mut webrtc = Page::follow(&net, &format!("http://{addr}/"), 60, "webrtc");
    let url = format!("rtsp://{addr}/stream");
    let mut rtsp = Ffmpeg::play(&net.viewer_ns, &url, "udp", (320, 240));
    let names = ["native viewer", "MJPEG page", "WebRTC page", RTSP_UDP];
    let all_seen = |native: &ShownLog, mjpeg: &Page, webrtc: &Page, rtsp: &Ffmpeg| {
        [
            native_seen(native),
            mjpeg.seen(),
            webrtc.seen(),
            rtsp.seen(),
        ]
    };
    let said = |seen: &[Seen; 4]| {
        let counts: Vec<String> = names
            .iter()
            .zip(seen)
            .map(|(n, s)| format!("{n}: {} pictures, playing {}", s.len(), playing(s)))
            .collect();
        format!(
            "{}\nMJPEG page:\n{}\nWebRTC page:\n{}\nffmpeg: {}\nserver: {}",
            counts.join("; "),
            mjpeg.tail(),
            webrtc.tail(),
            rtsp.stderr(),
            server.said()
        )
    };
    wait_until(
        Duration::from_secs(30),
        Lazy(|| {
            format!(
                "every client playing: {}",
                said(&all_seen(&native, &mjpeg, &webrtc, &rtsp))
            )
        }),
        || {
            all_seen(&native, &mjpeg, &webrtc, &rtsp)
                .iter()
                .all(playing)
                .then_some(())
        },
    );
    let down = Instant::now();
    net.link_down();
    // The fault itself: 10 s without a link.
    std::thread::sleep(Duration::from_secs(10));
    net.link_up();
    let up = Instant::now();
    let before: Vec<u64> = all_seen(&native, &mjpeg, &webrtc, &rtsp)
        .iter()
        .map(|s| newest_before(s, down).unwrap())
        .collect();
    // Up to 10 s for every client, then 2 s more of pictures to judge.
    // (Whether they all did is judged below, client by client.)
    poll_until(Duration::from_secs(10), || {
        let seen = all_seen(&native, &mjpeg, &webrtc, &rtsp);
        let mut back = seen.iter().zip(&before).map(|(s, b)| resumed(s, *b));
        back.all(|at| at.is_some()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let seen = all_seen(&native, &mjpeg, &webrtc, &rtsp);
    let failure = said(&seen);
    let ffmpeg_said = rtsp.stderr();
    stop.store(true, Ordering::SeqCst);
    native_thread.join().unwrap();
    mjpeg.stop();
    webrtc.stop();
    rtsp.stop();
    server.terminate();
    server.assert_no_panic();
    let mut late = Vec::new();
    for ((name, s), b) in names.iter().zip(&seen).zip(&before) {
        let after = resumed(s, *b).map(|at| at.saturating_duration_since(up));
        let (corrupt, disorder) = damage(s);
        let disorder = real_disorder(name, disorder);
        eprintln!(
            "{name}: new pictures {after:?} after the link came back; {} pictures, \
             {corrupt} corrupt, out of order at {disorder:?}",
            s.len()
        );
        if after.is_none_or(|d| d > Duration::from_secs(3)) {
            late.push(format!("{name}: {after:?}"));
        }
    }
    for line in server.stderr().lines().filter(|l| l.contains(" left: ")) {
        eprintln!("  {line}");
    }
    // Its decoder says when a picture refers to one it did not get.
    let errors: Vec<&str> = ffmpeg_said.lines().filter(|l| l.contains("h264")).collect();
    eprintln!("ffmpeg's decoder said: {errors:?}");
    assert!(late.is_empty(), "not back within 3 s: {late:?}\n{failure}");
    for (name, s) in names.iter().zip(&seen) {
        let judged: Seen = if *name == RTSP_UDP {
            // See `RTSP_UDP_SETTLES`: judged before the fault, and once it
            // has settled.
            let settled = resumed(s, before[3]).map(|at| at + RTSP_UDP_SETTLES);
            let judged = s
                .iter()
                .filter(|(at, _)| *at < down || settled.is_some_and(|t| *at >= t));
            judged.copied().collect()
        } else {
            s.clone()
        };
        let (corrupt, disorder) = damage(&judged);
        let disorder = real_disorder(name, disorder);
        assert!(
            corrupt == 0 && disorder.is_empty(),
            "{name}: {corrupt} corrupt, out of order at {disorder:?}"
        );
    }
    assert_stamps_in_order(&mjpeg.values());
    assert_stamps_in_order(&webrtc.values());
    let last_mode = webrtc.values().last().map(|l| l["mode"].clone());
    assert_eq!(
        last_mode,
        Some(serde_json::json!("webrtc")),
        "the WebRTC page is on WebRTC again, not MJPEG"
    );
}

/// The protocols of the viewers at 10.231.0.2 that the server's `/stats`
/// lists (asked from the server's side, at most three times a second: the
/// accept limiter allows one address no more).
fn far_viewers(net: &NetnsPair, addr: &str, fetched: &mut Option<Instant>) -> Option<Vec<String>> {
    if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(350)) {
        return None;
    }
    *fetched = Some(Instant::now());
    let stats = net.stats(addr);
    let viewers = stats["viewers"].as_array()?;
    Some(
        viewers
            .iter()
            .filter(|v| {
                v["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("10.231.0.2:"))
            })
            .filter_map(|v| v["protocol"].as_str().map(str::to_string))
            .collect(),
    )
}

/// A plain HTTP client of `/stream.mjpg` in namespace `ns`, reading until
/// `stop` (or its connection fails).
fn mjpeg_client(ns: &str, addr: &str, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let (addr, stop) = (addr.to_string(), stop.clone());
    NetnsPair::spawn_in(ns, move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(s, "GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 64 << 10];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    })
}

/// Viewers that vanish without a FIN (the link goes and never comes back):
/// a native viewer, an MJPEG client over HTTP and ffmpeg over RTSP/TCP are
/// each let go within 15 s, their places freed in `/stats`, and the server
/// logs that each timed out.
#[test]
fn viewers_gone_without_a_fin_are_let_go_within_15_s() {
    let net = NetnsPair::new(None);
    let addr = "10.231.0.1:7897";
    let mut server = net.serve(addr, &["--codec", "h264", CAPTURE_ALWAYS, SERVE_PLAINTEXT]);
    let native = NetnsPair::livestream(
        &net.viewer_ns,
        "view (vanishes)",
        &["view", addr, "--sink", "null", "-q", VIEW_PLAINTEXT],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let http = mjpeg_client(&net.viewer_ns, addr, &stop);
    let mut rtsp = Ffmpeg::play(
        &net.viewer_ns,
        &format!("rtsp://{addr}/stream"),
        "tcp",
        (320, 240),
    );
    let kinds = ["native", "http", "rtsp"];
    let mut fetched = None;
    wait_until(
        Duration::from_secs(20),
        Lazy(|| format!("three viewers in /stats: {}", server.said())),
        || {
            let far = far_viewers(&net, addr, &mut fetched)?;
            kinds
                .iter()
                .all(|k| far.iter().any(|p| p == k))
                .then_some(())
        },
    );
    net.link_down();
    let vanished = Instant::now();
    let mut freed: [Option<Duration>; 3] = [None; 3];
    poll_until(Duration::from_secs(20), || {
        let far = far_viewers(&net, addr, &mut fetched)?;
        for (k, at) in kinds.iter().zip(freed.iter_mut()) {
            if at.is_none() && !far.iter().any(|p| p == k) {
                *at = Some(vanished.elapsed());
            }
        }
        freed.iter().all(Option::is_some).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    http.join().unwrap();
    native.signal(libc::SIGKILL);
    rtsp.stop();
    server.terminate();
    server.assert_no_panic();
    let said = server.stderr();
    let mut slow = Vec::new();
    for (kind, at) in ["native", "HTTP", "RTSP"].iter().zip(freed) {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("{kind} viewer 10.231.0.2:")) && l.contains(" left: "));
        eprintln!("{kind}: freed {at:?} after it vanished; {line:?}");
        // The log says why: it timed out (not "Broken pipe", which is how
        // the writer saw the connection end).
        if at.is_none_or(|d| d > Duration::from_secs(15))
            || line.is_none_or(|l| !l.contains("timed out"))
        {
            slow.push(format!("{kind}: {at:?}, logged {line:?}"));
        }
    }
    assert!(
        slow.is_empty(),
        "not let go within 15 s, or not logged as timed out: {slow:?}\n{}",
        server.said()
    );
}

/// Frames decoded a second over the page's lines from `from` to `to`, and
/// the longest span of lines in it without a frame decoded (its lines come
/// every half second, so a freeze is seen to within about that).
fn page_rate(
    lines: &[(Instant, serde_json::Value)],
    from: Instant,
    to: Instant,
) -> (f64, Duration) {
    let part: Vec<(Instant, u64)> = lines
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .filter_map(|(at, l)| Some((*at, l["decoded"].as_u64()?)))
        .collect();
    let (Some(first), Some(last)) = (part.first(), part.last()) else {
        return (0.0, to - from);
    };
    let fps = (last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64().max(0.001);
    let mut longest = Duration::ZERO;
    let mut still_since = first.0;
    for w in part.windows(2) {
        if w[1].1 > w[0].1 {
            still_since = w[1].0;
        } else {
            longest = longest.max(w[1].0 - still_since);
        }
    }
    (fps, longest)
}

/// NACKs and PLIs the page's receiver sent so far (getStats).
fn repairs(lines: &[(Instant, serde_json::Value)]) -> (u64, u64) {
    lines.last().map_or((0, 0), |(_, l)| {
        (
            l["nacks"].as_u64().unwrap_or(0),
            l["plis"].as_u64().unwrap_or(0),
        )
    })
}

/// Packets lost at random on their way to the viewer (1 %, then 5 %): a
/// native viewer of a 720p30 H.264 stream keeps at least 25 frames a second,
/// none corrupt, on its first connection; a WebRTC page beside it recovers
/// what is lost through NACKs and keyframe requests, decoding at a usable
/// rate without a freeze of more than a second. Without loss first, for
/// comparison.
#[test]
fn under_1_and_5_percent_loss_h264_keeps_its_rate_and_webrtc_recovers() {
    let net = NetnsPair::new(None);
    let addr = "10.231.0.1:7898";
    // The rendition stays 720p: what is measured is the stream under loss.
    let mut server = crate::adapt::serve_camera(&net, addr, "off");
    let stop = Arc::new(AtomicBool::new(false));
    let (shown, thread) = crate::adapt::watch_checked(&net.viewer_ns, addr, &stop, None);
    let mut page = Page::follow(&net, &format!("http://{addr}/"), 60, "webrtc");
    wait_until(
        Duration::from_secs(30),
        Lazy(|| format!("both playing: page {}\n{}", page.tail(), server.said())),
        || {
            let lines = page.lines.lock().unwrap();
            let now = Instant::now();
            let (fps, _) = page_rate(&lines, now - Duration::from_secs(2), now);
            (playing(&native_seen(&shown)) && fps > 10.0).then_some(())
        },
    );
    let mut results = Vec::new();
    for (loss, secs) in [(0.0, 6), (0.01, 10), (0.05, 10)] {
        net.set_loss_to_viewer(loss);
        let (nacks0, plis0) = repairs(&page.lines.lock().unwrap());
        let start = Instant::now();
        // The measurement: the stream as it goes, under this loss.
        std::thread::sleep(Duration::from_secs(secs));
        let end = Instant::now();
        let from = start + Duration::from_secs(1);
        let seen: Seen = native_seen(&shown)
            .into_iter()
            .filter(|(at, _)| *at >= from && *at < end)
            .collect();
        let fps = seen.len() as f64 / (end - from).as_secs_f64();
        let gap = seen.windows(2).map(|w| w[1].0 - w[0].0).max();
        let per_second: Vec<usize> = (0..secs - 1)
            .map(|i| {
                let a = from + Duration::from_secs(i);
                let b = a + Duration::from_secs(1);
                seen.iter().filter(|(at, _)| *at >= a && *at < b).count()
            })
            .collect();
        let (corrupt, disorder) = damage(&seen);
        let lines = page.lines.lock().unwrap();
        let (page_fps, freeze) = page_rate(&lines, from, end);
        let (nacks, plis) = repairs(&lines);
        let (nacks, plis) = (nacks - nacks0, plis - plis0);
        drop(lines);
        eprintln!(
            "{:.0} % loss: native {fps:.1} fps (each second {per_second:?}, longest gap {gap:?}), \
             {corrupt} corrupt, out of order at {disorder:?}; \
             WebRTC page {page_fps:.1} fps, longest freeze {freeze:?}, {nacks} NACKs, {plis} PLIs",
            loss * 100.0
        );
        let detail = format!("each second {per_second:?}, longest gap {gap:?}");
        results.push((
            loss,
            fps,
            detail,
            corrupt + disorder.len(),
            page_fps,
            freeze,
            nacks + plis,
        ));
    }
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    page.stop();
    let page_lines = page.values();
    server.terminate();
    server.assert_no_panic();
    // (Without loss first: a slow machine shows there, as fewer frames
    // spread evenly; TCP's retransmission timeouts under loss, as gaps.)
    let control = results[0].1;
    for (loss, fps, detail, bad, page_fps, freeze, repaired) in results {
        let pct = loss * 100.0;
        assert!(
            fps >= 25.0,
            "{pct} % loss: native {fps:.1} fps ({detail}); without loss {control:.1} fps"
        );
        assert_eq!(
            bad, 0,
            "{pct} % loss: native pictures corrupt or out of order"
        );
        assert!(
            page_fps >= 20.0,
            "{pct} % loss: the page decoded {page_fps:.1} fps"
        );
        assert!(
            freeze <= Duration::from_secs(1),
            "{pct} % loss: the page froze {freeze:?}"
        );
        if loss > 0.0 {
            assert!(repaired > 0, "{pct} % loss: no NACK nor PLI from the page");
        }
    }
    assert_stamps_in_order(&page_lines);
}
