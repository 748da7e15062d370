//! The adaptive-quality benchmark (not a test: `#[ignore]`, run by
//! `scripts/bench-adapt.sh`): over the same capped links, livestream
//! adaptive, livestream at one rendition (`adapt = "off"`), and ffmpeg's
//! libx264 at a fixed 2.5 Mbit/s over TCP (MPEG-TS, the usual ffmpeg
//! pipeline), each on the same camera-like 720p30 pictures (the stamped
//! synthetic camera): delivered fps, latency p50 / p95 (capture to shown, one
//! clock), Y-PSNR of every 10th picture against the frame as captured, and
//! the CPU each active rendition's encoder takes. Prints a Markdown table.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livestream::backend::table::CaptureConfig;
use livestream::media::clock;
use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::sources::synthetic_camera::SyntheticCameraSource;
use livestream::sources::test_pattern::read_stamp;

use crate::adapt::{serve_camera, watch_checked, Checker, Shown};
use crate::util::NetnsPair;

const W: u32 = 1280;
const H: u32 = 720;
/// Each run: this long in all, measured after the first `WARM`.
const RUN: Duration = Duration::from_secs(20);
const WARM: Duration = Duration::from_secs(5);

/// One row of the table.
struct Row {
    who: &'static str,
    cap: &'static str,
    fps: f64,
    p50: f64,
    p95: f64,
    psnr: f64,
    rendition: String,
    cpu: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// fps, latency p50 / p95 (ms) and mean Y-PSNR (dB) of what was shown from
/// `from` on; and pictures that were not their frame's.
fn summary(shown: &[Shown], from: Instant, to: Instant) -> (f64, f64, f64, f64, usize) {
    let part: Vec<&Shown> = shown.iter().filter(|s| s.at >= from && s.at < to).collect();
    let mut ms: Vec<f64> = part.iter().map(|s| s.latency_ms).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let psnr: Vec<f64> = part.iter().filter_map(|s| s.psnr).collect();
    let mean = psnr.iter().sum::<f64>() / psnr.len().max(1) as f64;
    (
        part.len() as f64 / (to - from).as_secs_f64(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        mean,
        part.iter().filter(|s| !s.stamped).count(),
    )
}

/// livestream serving the stamped 720p30 synthetic camera with `adapt`,
/// one viewer behind `rate`.
fn livestream(who: &'static str, adapt: &str, cap: &'static str, rate: &str) -> Row {
    let net = NetnsPair::new(Some(rate));
    let addr = "10.231.0.1:7893";
    let mut server = serve_camera(&net, addr, adapt);
    let stop = Arc::new(AtomicBool::new(false));
    let (shown, thread) = watch_checked(&net.viewer_ns, addr, &stop, Some(10));
    let start = Instant::now();
    std::thread::sleep(RUN);
    let end = Instant::now();
    let stats = net.stats(addr);
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    server.terminate();
    let (fps, p50, p95, psnr, bad) = summary(&shown.lock().unwrap(), start + WARM, end);
    assert_eq!(bad, 0, "{who} at {cap}: pictures not their frame's");
    assert!(fps > 0.0, "{who} at {cap}: nothing shown");
    let rendition = stats["viewers"][0]["rendition"]["height"]
        .as_u64()
        .map_or("720p".into(), |h| format!("{h}p"));
    let cpu: Vec<String> = stats["renditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["frames"].as_u64().unwrap_or(0) > 0)
        .map(|r| {
            format!(
                "{}p {:.1} ms/frame",
                r["height"],
                r["cpu_ms_per_frame"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    Row {
        who,
        cap,
        fps,
        p50,
        p95,
        psnr,
        rendition,
        cpu: if cpu.is_empty() {
            "-".into()
        } else {
            cpu.join(", ")
        },
    }
}

/// ffmpeg's libx264 at a fixed 2.5 Mbit/s over TCP: the same pictures fed
/// to an ffmpeg in the server's namespace as a camera would (each frame
/// when due; one the encoder was not ready for is lost, not queued), read
/// back decoded by an ffmpeg in the viewer's.
fn x264(cap: &'static str, rate: &str) -> Row {
    let net = NetnsPair::new(Some(rate));
    let size = format!("{W}x{H}");
    let mut sender = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.server_ns,
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
        ])
        .args([
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &size, "-r", "30", "-i", "-",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k", "-g", "60",
        ])
        .args(["-f", "mpegts", "-muxdelay", "0", "-flush_packets", "1"])
        .arg("tcp://0.0.0.0:7894?listen=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg runs");
    let mut feed = sender.stdin.take().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The camera: frame n is due at n / 30 s, stamped then.
    let camera = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let capture = CaptureConfig {
                width: W,
                height: H,
                fps: 30.0,
                format: PixelFormat::Rgb24,
            };
            let mut source = SyntheticCameraSource::stamped(&capture).unwrap();
            let mut frame = Frame::empty();
            let t0 = Instant::now();
            let t0_us = clock::now_us();
            while !stop.load(Ordering::Relaxed) {
                let n = (t0.elapsed().as_secs_f64() * 30.0).ceil() as u64;
                let due = t0 + Duration::from_secs_f64(n as f64 / 30.0);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                source.frame_at(n, t0_us + n * 1_000_000 / 30, &mut frame);
                if feed.write_all(&frame.data).is_err() {
                    break;
                }
            }
        })
    };
    // The sender listens once its first frame is in.
    let listening = crate::wait::poll_until(Duration::from_secs(10), || {
        let ss = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.server_ns,
                "ss",
                "-Hltn",
                "sport = :7894",
            ])
            .output()
            .ok()?;
        (!ss.stdout.is_empty()).then_some(())
    });
    assert!(listening.is_some(), "the sending ffmpeg does not listen");
    let mut receiver = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.viewer_ns,
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
        ])
        // Enough probing to find the stream in MPEG-TS (its tables come
        // every 0.1 s); it delays the start, not each frame.
        .args(["-fflags", "nobuffer", "-flags", "low_delay"])
        .args(["-probesize", "200000", "-analyzeduration", "200000"])
        .args(["-f", "mpegts", "-i", "tcp://10.231.0.1:7894"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs");
    let mut out = receiver.stdout.take().unwrap();
    let mut said = receiver.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = said.read_to_string(&mut text);
        text
    });
    let mut checker = Checker::new(Some(10));
    let shown = checker.shown.clone();
    let reader = std::thread::spawn(move || {
        let mut frame = Frame::empty();
        frame.reset(FrameInfo::packed(PixelFormat::Rgb24, W, H).unwrap());
        while out.read_exact(&mut frame.data).is_ok() {
            if let Some(stamp) = read_stamp(&frame) {
                (frame.seq, frame.capture_us) = (stamp.seq, stamp.capture_us);
            } else {
                (frame.seq, frame.capture_us) = (u64::MAX, 0);
            }
            checker.check(&frame);
        }
    });
    let start = Instant::now();
    std::thread::sleep(RUN);
    let end = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let _ = receiver.kill();
    let _ = sender.kill();
    let _ = (receiver.wait(), sender.wait());
    let _ = (camera.join(), reader.join());
    let said = said.join().unwrap_or_default();
    let (fps, p50, p95, psnr, bad) = summary(&shown.lock().unwrap(), start + WARM, end);
    assert_eq!(bad, 0, "x264 at {cap}: pictures without their stamp");
    assert!(
        fps > 0.0,
        "x264 at {cap}: nothing shown; the receiving ffmpeg said:\n{said}"
    );
    Row {
        who: "ffmpeg libx264 2.5 Mbit/s, TCP",
        cap,
        fps,
        p50,
        p95,
        psnr,
        rendition: "720p".into(),
        cpu: "-".into(),
    }
}

#[test]
#[ignore = "a benchmark: scripts/bench-adapt.sh"]
fn bench_adaptive_fixed_and_x264_over_capped_links() {
    let mut rows = Vec::new();
    for (cap, rate) in [
        ("8 Mbit/s", "8mbit"),
        ("3 Mbit/s", "3mbit"),
        ("1 Mbit/s", "1mbit"),
    ] {
        rows.push(livestream("livestream adaptive", "auto", cap, rate));
        rows.push(livestream("livestream fixed (adapt off)", "off", cap, rate));
        rows.push(x264(cap, rate));
    }
    println!("| link | sender | delivered fps | latency p50 ms | p95 ms | Y-PSNR dB | rendition | rendition encoder CPU |");
    println!("|---|---|---:|---:|---:|---:|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.1} | {} | {} |",
            r.cap, r.who, r.fps, r.p50, r.p95, r.psnr, r.rendition, r.cpu
        );
    }
}
