//! `livestream bench --rtsp`: RTSP clients of the real server in this process,
//! on 127.0.0.1, over TCP and UDP.
//!
//! - **Latency**: ffmpeg decodes the stream (`-fflags nobuffer -flags
//!   low_delay`) into grey pictures on a pipe; each picture's test-pattern
//!   stamp gives its capture time on this machine's clock, so capture →
//!   decoded (and written to the pipe) is measured per frame. The native
//!   viewer watches the same server at the same time, for the same figure.
//! - **CPU per client**: 1 and then N clients that only receive (the
//!   [`Receiver`] below: our depacketiser counts whole access units, no
//!   decoding), so the server's CPU per frame with one client and with N can
//!   be set side by side, and each client's frame rate checked.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::loopback::{server_cpu_ns, thread_cpu};
use super::BenchError;
use crate::backend::Kind;
use crate::config::{Auth, Config, Overrides};
use crate::media::clock;
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
use crate::media::histogram::LatencyHistogram;
use crate::net::rtp::H264Depacketizer;
use crate::net::rtsp::{read_message, Incoming};
use crate::registry;
use crate::server::{RunningServer, ServeLimits};
use crate::sources::test_pattern::read_stamp;
use crate::viewer::{self, ViewOptions};

/// A client that plays an RTSP stream and only counts the access units that
/// arrive whole: what a scale test needs, without a decoder's CPU.
pub struct Receiver {
    /// Whole access units so far.
    pub frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Receiver {
    /// Plays `url` (`rtsp://host:port/stream`, no auth) over TCP
    /// (`udp = false`) or UDP, on a thread named `name`.
    pub fn start(url: &str, udp: bool, name: &str) -> std::io::Result<Receiver> {
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (url, frames, stop) = (url.to_string(), frames.clone(), stop.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || receive(&url, udp, &frames, &stop))?
        };
        Ok(Receiver {
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and joins it; what went wrong, if anything did.
    pub fn finish(mut self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        let result = self
            .thread
            .take()
            .map_or(Ok(()), |t| t.join().unwrap_or(Err("panicked".into())));
        result.map(|()| self.frames.load(Ordering::Relaxed))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one request on `s` and reads its answer; the answer's head.
fn ask(s: &mut TcpStream, inbuf: &mut Vec<u8>, request: &str) -> Result<String, String> {
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(inbuf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&inbuf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if inbuf.len() >= end + 4 + len {
                inbuf.drain(..end + 4 + len);
                if !head.starts_with("RTSP/1.0 200") {
                    return Err(head);
                }
                return Ok(head);
            }
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        inbuf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn receive(url: &str, udp: bool, frames: &AtomicU64, stop: &AtomicBool) -> Result<(), String> {
    let host = url
        .trim_start_matches("rtsp://")
        .split('/')
        .next()
        .unwrap_or("");
    let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut inbuf = Vec::new();
    ask(
        &mut s,
        &mut inbuf,
        &format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )?;
    // UDP: an even port pair of our own.
    let sockets = if udp {
        let mut tries = 0;
        loop {
            let rtp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
            match UdpSocket::bind(("127.0.0.1", port.wrapping_add(1))) {
                Ok(rtcp) if port % 2 == 0 => break Some((rtp, rtcp, port)),
                _ if tries < 50 => tries += 1,
                _ => return Err("no even UDP port pair".into()),
            }
        }
    } else {
        None
    };
    let transport = match &sockets {
        Some((_, _, port)) => format!("RTP/AVP;unicast;client_port={port}-{}", port + 1),
        None => "RTP/AVP/TCP;unicast;interleaved=0-1".into(),
    };
    let setup = ask(
        &mut s,
        &mut inbuf,
        &format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: {transport}\r\n\r\n"),
    )?;
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .ok_or("no session")?
        .to_string();
    ask(
        &mut s,
        &mut inbuf,
        &format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"),
    )?;
    let mut depack = H264Depacketizer::new(8 << 20);
    let mut count = |packet: &[u8]| {
        if let Ok(Some(_)) = depack.push(packet) {
            frames.fetch_add(1, Ordering::Relaxed);
        }
    };
    match sockets {
        Some((rtp, _rtcp, _)) => {
            rtp.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = rtp.recv(&mut buf) {
                    count(&buf[..n]);
                }
            }
        }
        None => {
            let mut chunk = vec![0u8; 64 << 10];
            while !stop.load(Ordering::Relaxed) {
                while let Ok(Some((msg, used))) = read_message(&inbuf) {
                    if let Incoming::Interleaved { channel: 0, data } = msg {
                        count(data);
                    }
                    inbuf.drain(..used);
                }
                match s.read(&mut chunk) {
                    Ok(0) => return Err("the server closed the connection".into()),
                    Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                    Err(_) => {}
                }
            }
        }
    }
    let _ = s.write_all(
        format!("TEARDOWN {url} RTSP/1.0\r\nCSeq: 4\r\nSession: {session}\r\n\r\n").as_bytes(),
    );
    Ok(())
}

/// What `bench --rtsp` measures.
pub struct RtspArgs<'a> {
    pub sizes: &'a [(u32, u32)],
    pub contents: &'a [String],
    pub seconds: f64,
    /// The larger number of receiving clients.
    pub clients: usize,
}

/// A server for one case: `content` (test-pattern or photo) in H.264 at
/// 30 fps, open, on a free loopback port.
fn server(base: &Config, content: &str, size: (u32, u32)) -> Result<RunningServer, BenchError> {
    let source = match content {
        "test-pattern" => "test-pattern",
        "photo" => "synthetic-camera",
        other => return Err(BenchError::Content(other.into())),
    };
    let overrides = Overrides {
        source: Some(source.into()),
        codec: Some("h264".into()),
        listen: Some("127.0.0.1:0".into()),
        width: Some(size.0),
        height: Some(size.1),
        fps: Some(30.0),
        ..Default::default()
    };
    let mut cfg = Config::parse(base.text.clone(), &overrides)?;
    cfg.serve.auth = Auth::None;
    cfg.view.auth = Auth::None;
    cfg.serve.discovery = false;
    Ok(RunningServer::start(&cfg, ServeLimits::default())?)
}

/// ffmpeg's latency: capture → decoded picture on its pipe, per frame (ms),
/// while the native viewer watches too; and the native viewer's.
fn latency(
    base: &Config,
    size: (u32, u32),
    udp: bool,
    seconds: f64,
) -> Result<(LatencyHistogram, LatencyHistogram), BenchError> {
    let server = server(base, "test-pattern", size)?;
    let addr = server.local_addr();
    let url = format!("rtsp://{addr}/stream");
    let mut ffmpeg = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-fflags",
            "nobuffer",
            "-flags",
            "low_delay",
            "-threads",
            "1",
        ])
        .args([
            "-rtsp_transport",
            if udp { "udp" } else { "tcp" },
            "-i",
            &url,
        ])
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut pipe = ffmpeg.stdout.take().ok_or(BenchError::ViewerPanicked)?;
    let info = FrameInfo::packed(PixelFormat::Grey, size.0, size.1)
        .map_err(|e| BenchError::Backend(e.into()))?;
    let mut cfg = Config::parse(base.text.clone(), &Overrides::default())?;
    cfg.view.auth = Auth::None;
    let stop = AtomicBool::new(false);
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs_f64(seconds);
    let result = std::thread::scope(|scope| {
        let native = std::thread::Builder::new()
            .name("bench-view".into())
            .spawn_scoped(scope, || {
                let mut sink = (registry::sink("null")?.open)(&cfg.backend(Kind::Sink, "null"))?;
                let opts = ViewOptions {
                    frames: None,
                    duration: Some(warmup + measured),
                    quiet: true,
                    reconnect: false,
                    limits: cfg.view.limits,
                    latency_log: None,
                };
                Ok::<_, BenchError>(viewer::run(
                    &addr.to_string(),
                    sink.as_mut(),
                    &cfg,
                    &opts,
                    &stop,
                )?)
            })?;
        let mut ours = LatencyHistogram::default();
        let mut frame = Frame::empty();
        frame.info = info;
        frame.data.resize(info.byte_len(), 0);
        let started = Instant::now();
        while started.elapsed() < warmup + measured {
            if pipe.read_exact(&mut frame.data).is_err() {
                break;
            }
            let now = clock::now_us();
            if started.elapsed() >= warmup {
                if let Some(stamp) = read_stamp(&frame) {
                    ours.record(now.saturating_sub(stamp.capture_us));
                }
            }
        }
        let native = native.join().map_err(|_| BenchError::ViewerPanicked)??;
        Ok::<_, BenchError>((ours, native.latency))
    });
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    server.stop()?;
    result
}

/// Server CPU (ms) per frame with `n` receiving clients, and the slowest
/// client's frame rate.
fn cpu_with(
    base: &Config,
    content: &str,
    size: (u32, u32),
    udp: bool,
    n: usize,
    seconds: f64,
) -> Result<(f64, f64), BenchError> {
    let server = server(base, content, size)?;
    let url = format!("rtsp://{}/stream", server.local_addr());
    let receivers = (0..n)
        .map(|i| Receiver::start(&url, udp, &format!("rtsp-client-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    let frames0: Vec<u64> = receivers
        .iter()
        .map(|r| r.frames.load(Ordering::Relaxed))
        .collect();
    let captured0 = server.frames_captured();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let cpu1 = thread_cpu();
    let elapsed = t0.elapsed().as_secs_f64();
    let captured = (server.frames_captured() - captured0).max(1);
    let slowest = receivers
        .iter()
        .zip(&frames0)
        .map(|(r, f0)| (r.frames.load(Ordering::Relaxed) - f0) as f64 / elapsed)
        .fold(f64::INFINITY, f64::min);
    for r in receivers {
        if let Err(e) = r.finish() {
            log::warn!("an RTSP client of the bench: {e}");
        }
    }
    server.stop()?;
    let ms = server_cpu_ns(&cpu0, &cpu1) as f64 / 1e6 / captured as f64;
    Ok((ms, slowest))
}

/// Runs it, printing a Markdown table.
pub fn run(base: &Config, args: &RtspArgs<'_>, stop: &AtomicBool) -> Result<(), BenchError> {
    let has_ffmpeg = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_ffmpeg {
        log::warn!("no ffmpeg here: the latency columns are left empty");
    }
    println!(
        "| content | size | transport | server CPU ms/frame, 1 client | {n} clients | ratio | slowest client fps ({n}) | ffmpeg latency p50 / p95 ms | native viewer p50 / p95 ms |",
        n = args.clients
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for content in args.contents {
        for &size in args.sizes {
            for udp in [false, true] {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let (one, _) = cpu_with(base, content, size, udp, 1, args.seconds)?;
                let (many, slowest) =
                    cpu_with(base, content, size, udp, args.clients, args.seconds)?;
                let lat = if has_ffmpeg && content == "test-pattern" {
                    let (ff, native) = latency(base, size, udp, args.seconds)?;
                    let q = |h: &LatencyHistogram, p| h.percentile(p).unwrap_or(f64::NAN) / 1000.0;
                    format!(
                        "{:.1} / {:.1} | {:.1} / {:.1}",
                        q(&ff, 0.5),
                        q(&ff, 0.95),
                        q(&native, 0.5),
                        q(&native, 0.95)
                    )
                } else {
                    "- | -".into()
                };
                println!(
                    "| {content} | {}x{} | {} | {one:.2} | {many:.2} | {:.2} | {slowest:.1} | {lat} |",
                    size.0,
                    size.1,
                    if udp { "UDP" } else { "TCP" },
                    many / one
                );
            }
        }
    }
    Ok(())
}
