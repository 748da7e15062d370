//! Each viewer gets what its own link carries (the adaptive-quality issue):
//! the server's estimate of each TCP viewer's link, from its connection
//! (`src/server/link.rs`), and the rendition each native viewer is sent
//! (`src/server/adapt.rs`), over real links shaped by tbf between two network
//! namespaces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livestream::backend::table::CaptureConfig;
use livestream::config::{Auth, Config, ConfigText, Overrides};
use livestream::media::clock;
use livestream::media::frame::{Frame, PixelFormat};
use livestream::media::quality::psnr_y;
use livestream::sinks::{Flow, FrameSink, Live, StreamMeta};
use livestream::sources::synthetic_camera::SyntheticCameraSource;
use livestream::sources::test_pattern::read_stamp;
use livestream::viewer::{self, ViewOptions};

use crate::util::{NetnsPair, SERVE_PLAINTEXT, VIEW_PLAINTEXT};
use crate::wait::poll_until;

/// The link figures `/stats` gives for the viewer at 10.231.0.2.
fn link_of(net: &NetnsPair, addr: &str) -> Option<(f64, bool)> {
    let stats = net.stats(addr);
    let viewer = stats["viewers"]
        .as_array()?
        .iter()
        .find(|v| {
            v["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("10.231.0.2:"))
        })?
        .clone();
    let link = viewer.get("link")?;
    Some((link["kbit"].as_f64()?, link["measured"].as_bool()?))
}

/// Waits until the viewer's link is measured within 40 % below and 15 %
/// above `kbit`; returns how long that took.
fn wait_for_link(net: &NetnsPair, addr: &str, kbit: f64, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    // At most four requests a second: the server's accept limits how fast
    // one address may connect, and this one is the test's.
    let mut fetched: Option<Instant> = None;
    let found = poll_until(within, || {
        if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return None;
        }
        fetched = Some(Instant::now());
        last = link_of(net, addr);
        last.filter(|&(k, measured)| measured && k >= kbit * 0.6 && k <= kbit * 1.15)
    });
    assert!(
        found.is_some(),
        "the viewer's link is not measured near {kbit} kbit/s within {within:?}: last {last:?}"
    );
    start.elapsed()
}

/// A raw stream (55 Mbit/s) to a viewer behind a 6 Mbit/s link: the server
/// measures about 6, then about 1.5 within 4 s of the link dropping to that,
/// and says so in `/metrics` too.
#[test]
fn the_server_measures_each_viewers_link_and_follows_it_down() {
    let net = NetnsPair::new(Some("6mbit"));
    let addr = "10.231.0.1:7890";
    let mut server = net.serve(addr, &["--codec", "raw", SERVE_PLAINTEXT]);
    let mut viewer = NetnsPair::livestream(
        &net.viewer_ns,
        "view (6 Mbit/s)",
        &["view", addr, "--sink", "null", VIEW_PLAINTEXT],
    );
    let first = wait_for_link(&net, addr, 6000.0, Duration::from_secs(10));
    net.set_rate("1500kbit");
    // The estimate looks back 2 s (server/link.rs WINDOW_US), sampled every
    // 0.2 s; this poll every 0.25 s: 2.5-2.9 s here.
    let down = wait_for_link(&net, addr, 1500.0, Duration::from_secs(4));
    eprintln!("link measured at 6 Mbit/s after {first:?}; at 1.5 Mbit/s {down:?} after the change");
    // The viewer is told (a link packet a second) and shows it.
    let told = poll_until(Duration::from_secs(4), || {
        let said = viewer.stderr();
        let last = said
            .rsplit("link ~")
            .next()
            .filter(|_| said.contains("link ~"))?;
        let mbit: f64 = last.split(' ').next()?.parse().ok()?;
        (0.9..=1.8).contains(&mbit).then_some(mbit)
    });
    assert!(
        told.is_some(),
        "the viewer's status line: {}",
        viewer.stderr()
    );
    let metrics_addr = addr.to_string();
    let metrics = net.in_server_ns(move || {
        let body = crate::http_client::get(&metrics_addr, "/metrics").body;
        String::from_utf8(body).unwrap()
    });
    let line = metrics
        .lines()
        .find(|l| l.starts_with("livestream_viewer_link_bytes_per_second{peer=\"10.231.0.2:"))
        .unwrap_or_else(|| panic!("no link line in /metrics:\n{metrics}"));
    let bps: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.9e6 / 8.0..=1.8e6 / 8.0).contains(&bps), "{line}");
    assert!(metrics.contains("livestream_viewer_link_measured{peer=\"10.231.0.2:"));
    viewer.terminate();
    server.terminate();
    server.assert_no_panic();
}

/// What a viewer presented: when, which frame, how late, whether its
/// picture was that frame's (the stamp read back, scaled down and up), and
/// for some, how close it is to the frame as captured (Y-PSNR, dB).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shown {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) latency_ms: f64,
    pub(crate) stamped: bool,
    pub(crate) psnr: Option<f64>,
}

pub(crate) type ShownLog = Arc<Mutex<Vec<Shown>>>;

/// Keeps what each picture was, not the picture; with a reference (the
/// synthetic camera made again), the Y-PSNR of every `every`th picture.
pub(crate) struct Checker {
    pub(crate) shown: ShownLog,
    reference: Option<(SyntheticCameraSource, Frame, u64)>,
}

impl Checker {
    pub(crate) fn new(psnr_every: Option<u64>) -> Checker {
        let capture = CaptureConfig {
            width: 1280,
            height: 720,
            fps: 30.0,
            format: PixelFormat::Rgb24,
        };
        Checker {
            shown: ShownLog::default(),
            reference: psnr_every.map(|every| {
                (
                    SyntheticCameraSource::stamped(&capture).unwrap(),
                    Frame::empty(),
                    every,
                )
            }),
        }
    }

    /// Notes `frame`, shown now.
    pub(crate) fn check(&mut self, frame: &Frame) {
        let at = Instant::now();
        let latency_ms = clock::now_us().saturating_sub(frame.capture_us) as f64 / 1000.0;
        let stamp = read_stamp(frame);
        let psnr = match &mut self.reference {
            Some((source, expected, every)) if frame.seq % *every == 0 => {
                source.frame_at(frame.seq, frame.capture_us, expected);
                psnr_y(expected, frame)
            }
            _ => None,
        };
        self.shown.lock().unwrap().push(Shown {
            at,
            seq: frame.seq,
            latency_ms,
            stamped: stamp.is_some_and(|s| s.seq == frame.seq && s.capture_us == frame.capture_us),
            psnr,
        });
    }
}

impl FrameSink for Checker {
    fn start(&mut self, _meta: &StreamMeta) -> Result<(), livestream::error::SinkError> {
        Ok(())
    }

    fn present(
        &mut self,
        frame: &Frame,
        _live: &Live,
    ) -> Result<Flow, livestream::error::SinkError> {
        self.check(frame);
        Ok(Flow::Continue)
    }

    fn finish(&mut self) -> Result<(), livestream::error::SinkError> {
        Ok(())
    }
}

/// An in-process viewer of `addr` inside namespace `ns`, until `stop`; with
/// `psnr_every`, the Y-PSNR of every so many pictures is taken too.
pub(crate) fn watch_checked(
    ns: &str,
    addr: &str,
    stop: &Arc<AtomicBool>,
    psnr_every: Option<u64>,
) -> (ShownLog, std::thread::JoinHandle<()>) {
    watch_with(ns, addr, stop, psnr_every, false)
}

/// [`watch_checked`] that reconnects (with the viewer's own backoff) when
/// its connection drops, as `livestream view` does by default.
pub(crate) fn watch_reconnecting(
    ns: &str,
    addr: &str,
    stop: &Arc<AtomicBool>,
) -> (ShownLog, std::thread::JoinHandle<()>) {
    watch_with(ns, addr, stop, None, true)
}

fn watch_with(
    ns: &str,
    addr: &str,
    stop: &Arc<AtomicBool>,
    psnr_every: Option<u64>,
    reconnect: bool,
) -> (ShownLog, std::thread::JoinHandle<()>) {
    let mut checker = Checker::new(psnr_every);
    let shown = checker.shown.clone();
    let (addr, stop) = (addr.to_string(), stop.clone());
    let thread = NetnsPair::spawn_in(ns, move || {
        let mut cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        cfg.view.auth = Auth::None;
        let opts = ViewOptions {
            frames: None,
            duration: None,
            quiet: true,
            reconnect,
            limits: cfg.view.limits,
            latency_log: None,
        };
        viewer::run(&addr, &mut checker, &cfg, &opts, &stop).unwrap();
    });
    (shown, thread)
}

fn watch(ns: &str, addr: &str, stop: &Arc<AtomicBool>) -> (ShownLog, std::thread::JoinHandle<()>) {
    watch_checked(ns, addr, stop, None)
}

/// Frames a second, latency p95, and pictures not their own frame's or out
/// of order, of what was shown from `from` to `to`.
fn figures(shown: &[Shown], from: Instant, to: Instant) -> Figures {
    let part: Vec<&Shown> = shown.iter().filter(|s| s.at >= from && s.at < to).collect();
    let fps = part.len() as f64 / (to - from).as_secs_f64();
    let mut ms: Vec<f64> = part.iter().map(|s| s.latency_ms).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let p95 = ms
        .get(ms.len() * 95 / 100)
        .copied()
        .unwrap_or(f64::INFINITY);
    let out_of_order: Vec<(u64, u64)> = part
        .windows(2)
        .filter(|w| w[1].seq <= w[0].seq)
        .map(|w| (w[0].seq, w[1].seq))
        .collect();
    let unstamped: Vec<u64> = part.iter().filter(|s| !s.stamped).map(|s| s.seq).collect();
    if !out_of_order.is_empty() || !unstamped.is_empty() {
        eprintln!("out of order (seq, then seq): {out_of_order:?}; pictures not their frame's: {unstamped:?}");
    }
    (fps, p95, unstamped.len() + out_of_order.len())
}

/// The rendition heights `/stats` gives for the viewer at `peer_prefix`.
fn rendition_of(net: &NetnsPair, addr: &str, peer_prefix: &str) -> Option<u64> {
    let stats = net.stats(addr);
    stats["viewers"]
        .as_array()?
        .iter()
        .find(|v| {
            v["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with(peer_prefix))
        })?
        .get("rendition")?
        .get("height")?
        .as_u64()
}

/// `serve` in the server's namespace on `addr`: the stamped synthetic
/// camera, 1280x720 at 30 fps, H.264 at its automatic 2.8 Mbit/s, with
/// `adapt`; returned once it listens.
pub(crate) fn serve_camera(net: &NetnsPair, addr: &str, adapt: &str) -> crate::util::Proc {
    let set_adapt = format!("--set=serve.adapt=\"{adapt}\"");
    let server = NetnsPair::livestream(
        &net.server_ns,
        "serve 720p (server namespace)",
        &[
            "serve",
            "--listen",
            addr,
            "--source",
            "synthetic-camera",
            "--width",
            "1280",
            "--height",
            "720",
            "--fps",
            "30",
            "--codec",
            "h264",
            "--set=sources.synthetic-camera.stamp=true",
            &set_adapt,
            SERVE_PLAINTEXT,
        ],
    );
    server.wait_listening();
    server
}

/// One step of the link: its name, the capped viewer's and the near
/// viewer's figures (fps, latency p95 ms, bad pictures), and the capped
/// viewer's rendition height at its end.
type Step = (&'static str, Figures, Figures, Option<u64>);
type Figures = (f64, f64, usize);

/// A 720p30 camera-like stream (a photo panned, with noise) to two viewers:
/// one behind a link that goes 8 -> 3 -> 1 -> 8 Mbit/s, one on the server's
/// own side. Returns, per step, each viewer's fps, latency p95, pictures
/// that were not their frame's, and the capped viewer's rendition height
/// at the step's end.
fn run_steps(adapt: &str) -> Vec<Step> {
    let net = NetnsPair::new(Some("8mbit"));
    let addr = "10.231.0.1:7892";
    let mut server = serve_camera(&net, addr, adapt);
    let stop = Arc::new(AtomicBool::new(false));
    let (capped, capped_thread) = watch(&net.viewer_ns, addr, &stop);
    let (near, near_thread) = watch(&net.server_ns, addr, &stop);
    let mut out = Vec::new();
    for (name, rate, secs) in [
        ("8 Mbit/s", "8mbit", 10),
        ("3 Mbit/s", "3mbit", 10),
        ("1 Mbit/s", "1mbit", 10),
        ("8 Mbit/s again", "8mbit", 16),
    ] {
        net.set_rate(rate);
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        let end = Instant::now();
        let from = start + Duration::from_secs(3);
        let a = figures(&capped.lock().unwrap(), from, end);
        let b = figures(&near.lock().unwrap(), from, end);
        let height = rendition_of(&net, addr, "10.231.0.2:");
        eprintln!(
            "adapt={adapt} {name}: capped viewer {:.1} fps, p95 {:.0} ms, {} unstamped, at {height:?} lines; \
             near viewer {:.1} fps, p95 {:.0} ms, {} unstamped",
            a.0, a.1, a.2, b.0, b.1, b.2
        );
        out.push((name, a, b, height));
    }
    stop.store(true, Ordering::SeqCst);
    capped_thread.join().unwrap();
    near_thread.join().unwrap();
    server.terminate();
    server.assert_no_panic();
    for line in server.stderr().lines().filter(|l| l.contains(" -> ")) {
        eprintln!("  {line}");
    }
    out
}

/// Each viewer gets what its own link carries: the capped one steps down as
/// its link falls and back up when it recovers, keeping the frame rate and
/// a live picture; the one beside the server keeps the stream throughout.
/// The same with `adapt = "off"` is recorded beside it: there the capped
/// viewer's frames freeze or fall behind at 1 Mbit/s.
#[test]
fn each_viewer_is_sent_the_rendition_its_own_link_carries() {
    let auto = run_steps("auto");
    let off = run_steps("off");
    for ((name, a, b, height), (_, a_off, _, _)) in auto.iter().zip(&off) {
        eprintln!(
            "{name}: adaptive {:.1} fps p95 {:.0} ms ({height:?} lines) | fixed {:.1} fps p95 {:.0} ms",
            a.0, a.1, a_off.0, a_off.1
        );
        assert_eq!(
            a.2, 0,
            "{name}: the capped viewer showed a picture not its frame's"
        );
        assert_eq!(
            b.2, 0,
            "{name}: the near viewer showed a picture not its frame's"
        );
        assert!(a.0 >= 25.0 && a.1 <= 200.0, "{name}: capped viewer {a:?}");
        assert!(b.0 >= 25.0 && b.1 <= 200.0, "{name}: near viewer {b:?}");
    }
    let heights: Vec<Option<u64>> = auto.iter().map(|s| s.3).collect();
    assert_eq!(heights[0], Some(720), "{heights:?}");
    // At 3 Mbit/s the stream (2.8 Mbit/s at most, less for this picture) may
    // still fit; the figures above say whether it kept its rate and latency.
    assert_eq!(heights[2], Some(240), "{heights:?}");
    assert_eq!(heights[3], Some(720), "back up: {heights:?}");
    let fixed_1m = off[2].1;
    assert!(
        fixed_1m.0 < 25.0 || fixed_1m.1 > 200.0,
        "without adapting, 1 Mbit/s should not carry the stream: {fixed_1m:?}"
    );
}

/// Capture on demand, on this machine with the test pattern (the camera
/// case runs against vivid in `vivid.rs`): closed until the first viewer,
/// open while it watches, closed a few seconds after it leaves, and open
/// again for the next, whose first picture comes at once.
#[test]
fn the_source_is_open_only_while_someone_watches() {
    let (mut server, addr) = crate::util::serve(&[
        "--width",
        "320",
        "--height",
        "240",
        "--codec",
        "h264",
        "--set=serve.capture=\"on-demand\"",
        SERVE_PLAINTEXT,
    ]);
    let stats = || crate::http_client::stats(&addr);
    assert_eq!(stats()["source_open"], false, "open before any viewer");
    assert_eq!(stats()["frames_captured"], 0);
    for round in 0..2 {
        let mut view = crate::util::Proc::spawn(
            "view (on demand)",
            &[
                "view",
                &addr,
                "--sink",
                "null",
                "--frames",
                "30",
                VIEW_PLAINTEXT,
            ],
        );
        view.expect_success(Duration::from_secs(30));
        let said = view.stderr();
        let at = said.find("first picture ").expect("first picture");
        let ms: f64 = said[at + "first picture ".len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap();
        let left = Instant::now();
        crate::wait::wait_until(Duration::from_secs(15), "the source to close", || {
            (stats()["source_open"] == false).then_some(())
        });
        let closed = left.elapsed();
        eprintln!(
            "round {round}: first picture {ms:.0} ms after connecting; closed {:.1} s after the viewer left",
            closed.as_secs_f64()
        );
        assert!(ms < 1000.0, "{ms} ms to the first picture");
        assert!(closed >= Duration::from_secs(3), "{closed:?}");
        let captured = stats()["frames_captured"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            stats()["frames_captured"].as_u64().unwrap(),
            captured,
            "nothing is captured while closed"
        );
    }
    server.terminate();
    server.assert_no_panic();
    let opened = server.stderr().matches("the source opened in").count();
    assert_eq!(opened, 2, "{}", server.said());
}

/// `tests/browser/follow.mjs URL SECONDS MODE` in the viewer's namespace,
/// its lines on its stdout.
pub(crate) fn follow_page(
    net: &NetnsPair,
    url: &str,
    seconds: u32,
    mode: &str,
) -> std::process::Child {
    let node = crate::stream::which("node").expect("node is needed");
    let script = crate::util::browser_scripts().join("follow.mjs");
    std::process::Command::new("ip")
        .args(["netns", "exec", &net.viewer_ns])
        .arg(node)
        .arg(script)
        .args([url, &seconds.to_string(), mode])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The stamps a page read never go backwards (each line holds its last 40);
/// returns the newest.
pub(crate) fn assert_stamps_in_order(lines: &[serde_json::Value]) -> u64 {
    let mut newest = 0;
    for l in lines {
        let seqs: Vec<u64> = l["seqs"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_u64()).collect())
            .unwrap_or_default();
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "stamps out of order: {seqs:?}"
        );
        if let Some(&last) = seqs.last() {
            assert!(last >= newest, "stamp {last} after {newest}");
            newest = last;
        }
    }
    newest
}

/// What `tests/browser/follow.mjs` printed so far: one JSON line each half
/// second, read as it comes.
type PageLines = Arc<Mutex<Vec<serde_json::Value>>>;

/// Frames decoded a second over the page's lines of the last `secs` seconds,
/// and the smallest and largest picture height in them (none if the lines do
/// not span them yet).
fn page_window(lines: &[serde_json::Value], secs: f64) -> Option<(f64, u64, u64)> {
    let with: Vec<&serde_json::Value> = lines.iter().filter(|l| l["decoded"].is_u64()).collect();
    let last = *with.last()?;
    let t = |l: &serde_json::Value| l["t"].as_f64().unwrap_or(0.0);
    let from = with.iter().rposition(|l| t(last) - t(l) >= secs)?;
    let window = &with[from..];
    let decoded = last["decoded"].as_u64()? - window[0]["decoded"].as_u64()?;
    let heights = window.iter().filter_map(|l| l["height"].as_u64());
    let (low, high) = heights.fold((u64::MAX, 0), |(a, b), h| (a.min(h), b.max(h)));
    Some((decoded as f64 / (t(last) - t(window[0])), low, high))
}

/// A WebRTC page in headless Chromium behind a 1 Mbit/s link: the server
/// moves it to a smaller rendition as str0m's estimate of its link falls
/// (from the browser's transport-wide feedback), where it decodes at least 20
/// frames a second, and the page says why; the cap lifted, it returns to the
/// stream's 720p. Every stamp the page reads from the pictures comes in order.
#[test]
fn a_webrtc_page_behind_1_mbit_gets_a_smaller_rendition_and_the_top_one_back() {
    let net = NetnsPair::new(Some("1mbit"));
    let addr = "10.231.0.1:7893";
    let mut server = serve_camera(&net, addr, "auto");
    let mut page = follow_page(&net, &format!("http://{addr}/"), 90, "webrtc");
    let lines: PageLines = Arc::default();
    let reader = {
        let lines = lines.clone();
        let out = page.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                lines.lock().unwrap().push(v);
            }
        })
    };
    let said = || {
        let l = lines.lock().unwrap();
        let tail: Vec<String> = l.iter().rev().take(6).map(|v| v.to_string()).collect();
        format!("page: {tail:?}\nserver: {}", server.said())
    };
    // Down: a smaller picture, decoded at 20 a second or more for 5 s.
    let started = Instant::now();
    let low = poll_until(Duration::from_secs(30), || {
        page_window(&lines.lock().unwrap(), 5.0).filter(|&(fps, _, h)| fps >= 20.0 && h < 720)
    })
    .unwrap_or_else(|| {
        panic!(
            "no smaller rendition at >= 20 fps behind 1 Mbit/s: {}",
            said()
        )
    });
    let low_at = started.elapsed();
    let told = lines.lock().unwrap().last().unwrap()["modeText"].clone();
    let stats = net.stats(addr);
    let viewer = stats["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["protocol"] == "webrtc")
        .cloned()
        .unwrap_or_else(|| panic!("no WebRTC viewer in /stats: {stats}"));
    eprintln!(
        "behind 1 Mbit/s after {low_at:?}: {low:?} (fps, height); page: {told}; \
         server: rendition {}, estimate {} kbit/s",
        viewer["rendition"], viewer["webrtc"]["estimate_kbit"]
    );
    let told = told.as_str().unwrap_or_default();
    assert!(
        // (The size it names is the one it had at the page's last look.)
        told.contains("link ~") && told.contains("p (") && !told.contains(": 720p"),
        "the page says why: {told}"
    );
    // str0m's estimate follows the link down. (Not every look: a probe of the
    // rendition above, a short burst, can pass whole through tbf's 32 KB
    // bucket at the veth's own rate and read as several Mbit/s for a moment,
    // seen once in CI at 3.4 Mbit/s; the estimate falls again at the next
    // feedback.)
    let mut estimates = Vec::new();
    let mut fetched: Option<Instant> = None;
    let low_estimate = poll_until(Duration::from_secs(10), || {
        if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(400)) {
            return None;
        }
        fetched = Some(Instant::now());
        let stats = net.stats(addr);
        let e = stats["viewers"]
            .as_array()?
            .iter()
            .find(|v| v["protocol"] == "webrtc")?["webrtc"]["estimate_kbit"]
            .as_f64()?;
        estimates.push(e);
        (e > 0.0 && e < 1500.0).then_some(e)
    });
    assert!(
        low_estimate.is_some(),
        "str0m's estimate behind 1 Mbit/s, looked at for 10 s: {estimates:?} kbit/s; {viewer}"
    );
    // Up: the cap lifted, back to 720p at full rate.
    net.set_rate("50mbit");
    let lifted = Instant::now();
    // (str0m probes the link in ALR every 5 s, and when the estimate stalls
    // every 15 s, as libwebrtc does: it takes some seconds to see the room.)
    let high = poll_until(Duration::from_secs(45), || {
        page_window(&lines.lock().unwrap(), 2.0).filter(|&(fps, h, _)| fps >= 25.0 && h == 720)
    })
    .unwrap_or_else(|| panic!("not back at 720p within 45 s of the cap lifted: {}", said()));
    eprintln!(
        "cap lifted: back at 720p after {:?}: {high:?}",
        lifted.elapsed()
    );
    let _ = page.kill();
    let _ = page.wait();
    reader.join().unwrap();
    let l = lines.lock().unwrap();
    let said = server.said();
    let moves: Vec<&str> = said.lines().filter(|l| l.contains("adapt]")).collect();
    eprintln!("the server's moves:\n{}", moves.join("\n"));
    assert_eq!(
        l.last().unwrap()["modeText"],
        "WebRTC",
        "nothing to explain at the top"
    );
    let newest = assert_stamps_in_order(&l);
    assert!(newest > 0, "the page read no stamp: {:?}", l.last());
    drop(l);
    server.terminate();
    server.assert_no_panic();
}

/// An MJPEG page (`?mode=mjpeg`) in headless Chromium behind a 3 Mbit/s link
/// (the stream's 720p JPEG is ~25 Mbit/s of photo): the server moves it to a
/// smaller, lower-quality JPEG rendition that the link carries at a usable
/// rate (at least 15 pictures shown a second, read from their stamps, in
/// order), and the page says why.
#[test]
fn an_mjpeg_page_behind_3_mbit_gets_a_smaller_jpeg_at_a_usable_rate() {
    let net = NetnsPair::new(Some("3mbit"));
    let addr = "10.231.0.1:7894";
    let mut server = serve_camera(&net, addr, "auto");
    let page = follow_page(&net, &format!("http://{addr}/?mode=mjpeg"), 30, "mjpeg");
    // While it plays: the server has moved it (`/stats`; at most four
    // requests a second, as the accept limiter lets one address).
    let mut fetched: Option<Instant> = None;
    let viewer = poll_until(Duration::from_secs(25), || {
        if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(300)) {
            return None;
        }
        fetched = Some(Instant::now());
        let stats = net.stats(addr);
        let v = stats["viewers"]
            .as_array()?
            .iter()
            .find(|v| v["protocol"] == "http")?;
        (v["rendition"]["height"].as_u64()? < 720).then(|| v.clone())
    });
    let out = page.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "unparsed": l })))
        .collect();
    let said = server.said();
    let moves: Vec<&str> = said.lines().filter(|l| l.contains("adapt]")).collect();
    eprintln!("the server's moves:\n{}", moves.join("\n"));
    assert!(out.status.success(), "the page: {lines:?}\nserver: {said}");
    let viewer = viewer.unwrap_or_else(|| panic!("no smaller rendition in /stats: {said}"));
    // The last 10 s: a smaller picture at a usable rate, said why.
    let end = lines.last().and_then(|l| l["t"].as_f64()).unwrap_or(0.0);
    let tail: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["t"].as_f64().is_some_and(|t| end - t <= 10.0))
        .collect();
    let shown: Vec<f64> = tail
        .iter()
        .filter_map(|l| l["shownPerSecond"].as_f64())
        .collect();
    let mut sorted = shown.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let heights: Vec<u64> = tail.iter().filter_map(|l| l["height"].as_u64()).collect();
    eprintln!(
        "MJPEG behind 3 Mbit/s, last 10 s: shown a second {shown:?} (median {median}), \
         heights {heights:?}; page: {}; server: rendition {}, link {}",
        tail.last()
            .map_or(serde_json::Value::Null, |l| l["modeText"].clone()),
        viewer["rendition"],
        viewer["link"]
    );
    assert!(
        !heights.is_empty() && heights.iter().all(|&h| h < 720),
        "a smaller rendition: {heights:?}"
    );
    assert!(median >= 15.0, "usable: {shown:?}");
    let told = tail.last().unwrap()["modeText"]
        .as_str()
        .unwrap_or_default();
    assert!(
        told.contains("the link is slow") && told.contains(&format!("{}p", heights[0])),
        "the page says why: {told}"
    );
    assert_stamps_in_order(&lines);
    server.terminate();
    server.assert_no_panic();
}

/// A link that nearly carries the stream (2.4 Mbit/s for its 2.8 Mbit/s
/// encoder): the viewer keeps 720p at the full frame rate, the stream's
/// encoder aimed lower for it (within its bounds, `/stats` `encoder_kbit`),
/// rather than a whole rendition down.
#[test]
fn a_link_that_nearly_carries_the_stream_keeps_it_at_a_lower_bitrate() {
    let net = NetnsPair::new(Some("2400kbit"));
    let addr = "10.231.0.1:7895";
    let mut server = serve_camera(&net, addr, "auto");
    let stop = Arc::new(AtomicBool::new(false));
    let (shown, thread) = watch(&net.viewer_ns, addr, &stop);
    // (At most three requests a second: the accept limiter.)
    let mut fetched: Option<Instant> = None;
    let lowered = poll_until(Duration::from_secs(20), || {
        if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(350)) {
            return None;
        }
        fetched = Some(Instant::now());
        let kbit = net.stats(addr)["encoder_kbit"].as_u64()?;
        // (Its own: 2764 kbit/s.)
        (kbit < 2700).then_some(kbit)
    })
    .unwrap_or_else(|| panic!("the encoder was not aimed lower: {}", server.said()));
    // Figures over 5 s, from 3 s after the change (the encoder's rate
    // control follows, and what the link queued drains).
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let end = Instant::now();
    let (fps, p95, bad) = figures(&shown.lock().unwrap(), start + Duration::from_secs(3), end);
    let height = rendition_of(&net, addr, "10.231.0.2:");
    let stats = net.stats(addr);
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    server.terminate();
    server.assert_no_panic();
    let said = server.said();
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("encoder aims") || l.contains(" -> "))
        .collect();
    eprintln!(
        "2.4 Mbit/s: encoder aimed at {lowered} kbit/s, then {}; viewer {fps:.1} fps, p95 {p95:.0} ms, \
         at {height:?} lines\n{}",
        stats["encoder_kbit"],
        lines.join("\n")
    );
    assert_eq!(bad, 0, "pictures not their frame's");
    assert_eq!(height, Some(720), "kept the stream's size");
    assert!(fps >= 25.0 && p95 <= 200.0, "{fps:.1} fps, p95 {p95:.0} ms");
    let now = stats["encoder_kbit"].as_u64().unwrap_or(0);
    assert!(
        (1382..2764).contains(&now),
        "within its bounds (half to all of 2.8 Mbit/s): {now}"
    );
}
