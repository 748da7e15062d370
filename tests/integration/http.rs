//! Browser viewing and HTTP: real clients (ffmpeg, headless Chromium, promtool)
//! against the server's port, and hostile HTTP that must harm no one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use livestream::codecs::FrameCodec;
use livestream::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};
use livestream::media::recording;

use crate::http_client::{exchange, get, stats};
use crate::stream::{read_recording, which};
use crate::util::{
    assert_no_gaps, record, serve, serve_small, temp_dir, wait_until, Lazy, Proc, Watcher,
    SERVE_PLAINTEXT, VIEW_PLAINTEXT,
};

/// `promtool check metrics` finds nothing wrong in `text` (format, names,
/// help texts).
pub(crate) fn promtool_check(text: &str) {
    let promtool =
        which("promtool").expect("promtool is needed: the README's test command installs it");
    let dir = temp_dir();
    std::fs::write(dir.path().join("metrics.txt"), text).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(dir.path().join("metrics.txt")).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decodes a JPEG into RGB with the project's own decoder, returning its size.
fn decode_jpeg(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let h = livestream::codecs::jpeg::markers::parse_header(bytes).expect("a JPEG");
    let mut codec = livestream::codecs::jpeg::JpegCodec::with_quality(80).unwrap();
    let mut frame = Frame::empty();
    frame.info = FrameInfo {
        format: PixelFormat::Jpeg,
        width: h.width,
        height: h.height,
        stride: 0,
    };
    codec
        .decode(&mut bytes.to_vec(), &mut frame)
        .expect("decodes");
    (h.width, h.height, frame.data)
}

#[test]
fn snapshot_stats_metrics_and_page() {
    let (mut server, addr) = serve_small(&[SERVE_PLAINTEXT]);
    let page = get(&addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("/stream.mjpg"));

    let snap = get(&addr, "/snapshot.jpg");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        snap.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        snap.body.len()
    );
    let (w, h, rgb) = decode_jpeg(&snap.body);
    assert_eq!((w, h, rgb.len()), (320, 240, 320 * 240 * 3));

    let response = get(&addr, "/stats");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    for field in [
        "name",
        "source",
        "codec",
        "format",
        "width",
        "height",
        "fps",
        "capture_fps",
        "frames_captured",
        "encoder_dropped",
        "uptime_seconds",
        "viewers",
    ] {
        assert!(json.get(field).is_some(), "/stats lacks {field}: {json}");
    }
    assert_eq!(json["width"], 320);
    assert_eq!(json["source"], "test-pattern");

    // Per-viewer fields, with a viewer watching.
    let mut view = Proc::spawn("view", &["view", &addr, VIEW_PLAINTEXT, "-q"]);
    view.wait_stderr("connected to", 1, Duration::from_secs(10));
    let viewer = wait_until(
        Duration::from_secs(10),
        Lazy(|| format!("a viewer sent 6 frames in /stats: {}", stats(&addr))),
        || {
            stats(&addr)["viewers"]
                .as_array()
                .and_then(|v| v.first())
                .filter(|v| v["sent"].as_u64() > Some(5))
                .cloned()
        },
    );
    for field in [
        "peer",
        "protocol",
        "sent",
        "dropped",
        "bytes",
        "fps",
        "latency_ms",
        "link",
        "connected_seconds",
    ] {
        assert!(
            viewer.get(field).is_some(),
            "viewer lacks {field}: {viewer}"
        );
    }
    assert_eq!(viewer["protocol"], "native");

    let metrics = get(&addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "livestream_viewer_frames_sent_total{peer=",
        "livestream_viewer_link_bytes_per_second{peer=",
        "livestream_viewer_rtt_seconds{peer=",
    ] {
        assert!(text.contains(line), "no {line} in:\n{text}");
    }
    promtool_check(&text);
    view.terminate();
    server.terminate();
}

/// ffmpeg reads the MJPEG stream: frames decode without error, and they change.
#[test]
fn ffmpeg_reads_the_mjpeg_stream() {
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    for codec in ["lz4", "jpeg"] {
        let (mut server, addr) = serve_small(&["--codec", codec, SERVE_PLAINTEXT]);
        let out = std::process::Command::new(&ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(format!("http://{addr}/stream.mjpg"))
            .args(["-frames:v", "30", "-f", "framemd5", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{codec}: ffmpeg: {stderr}"
        );
        let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
            .collect();
        assert_eq!(hashes.len(), 30, "{codec}");
        let mut distinct = hashes.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() > 20,
            "{codec}: only {} distinct frames of 30",
            distinct.len()
        );
        server.terminate();
    }
}

/// Headless Chromium opens the page of a server started with `args` (pairing
/// on, from the URL `serve` printed): the JSON `live.mjs` printed, after
/// checking that there is a picture and it changes.
fn page_shows_a_live_picture(args: &[&str], query: &str, evidence: &str) -> serde_json::Value {
    let node = which("node").expect("node is needed");
    let script = crate::util::browser_scripts().join("live.mjs");
    let mut all = vec!["--width", "640", "--height", "480", "--fps", "30"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--set", "serve.auth=\"pair\""]);
    let (mut server, _) = serve(&all);
    let url = server.page_url();
    assert!(url.contains("/?token="), "{url}");
    let url = format!("{url}{query}");
    let evidence = Path::new(env!("CARGO_TARGET_TMPDIR")).join(evidence);
    std::fs::create_dir_all(&evidence).unwrap();
    let out = std::process::Command::new(node)
        .arg(&script)
        .arg(&url)
        .arg(&evidence)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser check failed: {stdout}{}\nserver said: {}",
        String::from_utf8_lossy(&out.stderr),
        server.said()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["first"]["width"], 640, "{result}");
    assert!(
        result["stats"].as_str().unwrap().contains("fps captured"),
        "{result}"
    );
    assert!(evidence.join("first.png").is_file() && evidence.join("second.png").is_file());
    server.terminate();
    result
}

/// The page plays an H.264 stream over WebRTC (the default codec); a JPEG
/// stream over WebRTC too, the server encoding H.264 for its WebRTC viewers
/// (the `webrtc-h264` thread, only while one watches); and MJPEG when its URL
/// asks, saying so.
#[test]
fn chromium_shows_a_live_picture() {
    let h264 = page_shows_a_live_picture(&[], "", "browser");
    assert_eq!(h264["mode"], "WebRTC", "{h264}");
    assert!(h264["stats"].as_str().unwrap().contains("kbit/s"), "{h264}");
    let jpeg = page_shows_a_live_picture(&["--codec", "jpeg"], "", "browser-jpeg");
    assert_eq!(jpeg["mode"], "WebRTC", "{jpeg}");
    let mjpeg = page_shows_a_live_picture(&["--codec", "jpeg"], "&mode=mjpeg", "browser-mjpeg");
    assert_eq!(mjpeg["mode"], "MJPEG (as the URL asks)", "{mjpeg}");
}

/// Oversized heads, unknown methods and paths, and a client that sends a byte a
/// second: answered or timed out, while a native and an MJPEG viewer keep going.
#[test]
fn bad_http_harms_no_one() {
    let (mut server, addr) = serve_small(&["--set", "serve.handshake-timeout=1", SERVE_PLAINTEXT]);
    let watcher = Watcher::start(&addr, 120, &[VIEW_PLAINTEXT], &[]);
    // An MJPEG viewer, read by hand: count parts as they come.
    let mut mjpeg = TcpStream::connect(&addr).unwrap();
    mjpeg
        .write_all(b"GET /stream.mjpg HTTP/1.1\r\n\r\n")
        .unwrap();
    mjpeg
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(exchange(&addr, huge.as_bytes()).status, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: 1\r\n")).collect();
    assert_eq!(
        exchange(&addr, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).status,
        431
    );
    assert_eq!(
        exchange(&addr, b"DELETE /stats HTTP/1.1\r\n\r\n").status,
        405
    );
    assert_eq!(
        exchange(
            &addr,
            b"POST /stream.mjpg HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .status,
        405
    );
    assert_eq!(get(&addr, "/etc/passwd").status, 404);
    assert_eq!(get(&addr, "/../../stats").status, 404);
    assert_eq!(
        exchange(&addr, b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n").status,
        400
    );
    assert_eq!(exchange(&addr, b"HEAD / HTTP/1.1\r\n\r\n").body.len(), 0);

    // A byte a second: the whole head must arrive within the 1 s handshake timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in b"GET / HTTP/1.1\r\n\r\n" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        // The client's pace, not a wait for the server.
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let _ = slow.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "slow client got {:?}",
        String::from_utf8_lossy(&answer)
    );
    server.wait_stderr("408 Request Timeout", 1, Duration::from_secs(5));

    // The MJPEG viewer was fed all along.
    let mut buf = vec![0u8; 1 << 20];
    let mut text = Vec::new();
    let parts = std::cell::Cell::new(0);
    wait_until(
        Duration::from_secs(10),
        Lazy(|| format!("10 parts to the MJPEG viewer (got {})", parts.get())),
        || {
            let n = mjpeg.read(&mut buf).unwrap();
            assert!(n > 0, "MJPEG stream closed after {} parts", parts.get());
            text.extend_from_slice(&buf[..n]);
            parts.set(
                text.windows(17)
                    .filter(|w| w == b"--livestreamframe")
                    .count(),
            );
            (parts.get() >= 10).then_some(())
        },
    );

    watcher.finish();
    server.terminate();
}

/// A JPEG source (an MJPEG camera, here a recording of JPEG frames, some without
/// Huffman tables as UVC cameras send them): with `raw` the bytes reach the
/// viewer untouched; with `jpeg` they pass through untouched when complete and
/// gain the standard tables when not; browsers always get decodable frames.
#[test]
fn mjpeg_passes_through_untouched() {
    let dir = temp_dir();
    // Real JPEGs of the test pattern.
    let mut encoder = livestream::codecs::jpeg::JpegCodec::with_quality(85).unwrap();
    let capture = livestream::config::CaptureConfig {
        width: 320,
        height: 240,
        fps: 30.0,
        format: PixelFormat::Rgb24,
    };
    let mut pattern =
        livestream::sources::test_pattern::TestPatternSource::new(&capture, 4).unwrap();
    let mut jpegs = Vec::new();
    let mut frame = Frame::empty();
    for i in 0..12u64 {
        pattern.frame_at(i, i * 33_333, &mut frame);
        let mut out = Vec::new();
        encoder.encode(&frame, &mut out).unwrap();
        if i % 2 == 1 {
            out = livestream::codecs::jpeg::markers::strip_huffman_tables(&out).unwrap();
        }
        jpegs.push(out);
    }
    let path = dir.path().join("mjpeg.lsr");
    let info = StreamInfo {
        frame: FrameInfo {
            format: PixelFormat::Jpeg,
            width: 320,
            height: 240,
            stride: 0,
        },
        fps: 30.0,
    };
    let mut file = std::fs::File::create(&path).unwrap();
    recording::write_header(&mut file, &info).unwrap();
    for (i, j) in jpegs.iter().enumerate() {
        let f = Frame {
            info: info.frame,
            seq: i as u64,
            capture_us: 0,
            data: j.clone(),
        };
        recording::write_record(&mut file, &f).unwrap();
    }
    drop(file);
    let src = format!("sources.file.path={}", path.display());

    // raw: every byte as the camera sent it.
    let (mut server, addr) = serve(&[
        "--source",
        "file",
        "--set",
        &src,
        "--set",
        "sources.file.loop=true",
        "--codec",
        "raw",
        SERVE_PLAINTEXT,
    ]);
    let rec = dir.path().join("raw.lsr");
    record(&addr, &rec, 24, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    let got = read_recording(&rec);
    assert_eq!(got.len(), 24);
    for f in &got {
        assert_eq!(f.info.format, PixelFormat::Jpeg);
        assert!(
            jpegs.contains(&f.data),
            "frame {} was changed on the way",
            f.seq
        );
    }
    // Browsers get tables on every frame.
    for _ in 0..4 {
        let snap = get(&addr, "/snapshot.jpg");
        assert!(
            livestream::codecs::jpeg::markers::parse_header(&snap.body)
                .unwrap()
                .has_dht
        );
        assert_eq!(decode_jpeg(&snap.body).0, 320);
    }
    server.terminate();

    // jpeg codec: complete frames untouched, incomplete ones completed.
    let (mut server, addr) = serve(&[
        "--source",
        "file",
        "--set",
        &src,
        "--set",
        "sources.file.loop=true",
        "--codec",
        "jpeg",
        SERVE_PLAINTEXT,
    ]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let parts = wait_until(
        Duration::from_secs(20),
        "12 whole parts of the MJPEG stream",
        || {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the MJPEG stream closed");
            raw.extend_from_slice(&buf[..n]);
            Some(split_parts(&raw)).filter(|parts| parts.len() >= 12)
        },
    );
    for p in &parts[..12] {
        match jpegs.iter().position(|j| j == p) {
            Some(i) => assert_eq!(i % 2, 0, "a frame without tables went out without them"),
            None => {
                let stripped = livestream::codecs::jpeg::markers::strip_huffman_tables(p).unwrap();
                let i = jpegs
                    .iter()
                    .position(|j| *j == stripped)
                    .expect("a completed camera frame");
                assert_eq!(i % 2, 1, "a complete frame was changed");
                assert!(
                    livestream::codecs::jpeg::markers::parse_header(p)
                        .unwrap()
                        .has_dht
                );
            }
        }
    }
    server.terminate();

    // lz4 (the default codec) carries the camera's JPEGs as they are; a sink that
    // needs pixels (Y4M here, a window alike) gets them decoded, tables or not.
    let (mut server, addr) = serve(&[
        "--source",
        "file",
        "--set",
        &src,
        "--set",
        "sources.file.loop=true",
        "--codec",
        "lz4",
        SERVE_PLAINTEXT,
    ]);
    let y4m = dir.path().join("camera.y4m");
    let set = format!("sinks.file.path={}", y4m.display());
    let mut view = crate::util::Proc::spawn(
        "view to y4m",
        &[
            "view",
            &addr,
            VIEW_PLAINTEXT,
            "--sink",
            "file",
            "--set",
            &set,
            "--frames",
            "12",
            "-q",
        ],
    );
    view.expect_success(Duration::from_secs(20));
    server.terminate();
    let bytes = std::fs::read(&y4m).unwrap();
    assert!(
        bytes.starts_with(b"YUV4MPEG2 W320 H240 "),
        "{:?}",
        &bytes[..40.min(bytes.len())]
    );
    let ffmpeg = crate::stream::which("ffmpeg").unwrap();
    let out = std::process::Command::new(ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(&y4m)
        .args(["-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(frames, 12);
}

/// The JPEG parts of a multipart body that are complete so far.
fn split_parts(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut at = 0;
    while let Some(start) = find(&raw[at..], b"Content-Length: ").map(|i| at + i + 16) {
        let Some(eol) = find(&raw[start..], b"\r\n").map(|i| start + i) else {
            break;
        };
        let len: usize = std::str::from_utf8(&raw[start..eol])
            .unwrap()
            .parse()
            .unwrap();
        let Some(body) = find(&raw[eol..], b"\r\n\r\n").map(|i| eol + i + 4) else {
            break;
        };
        if raw.len() < body + len {
            break;
        }
        parts.push(raw[body..body + len].to_vec());
        at = body + len;
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The jpeg codec end to end: what the viewer shows is close to what was captured.
#[test]
fn jpeg_codec_round_trip_is_close() {
    let dir = temp_dir();
    let (mut server, addr) = serve(&[
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        "--codec",
        "jpeg",
        SERVE_PLAINTEXT,
    ]);
    let rec = dir.path().join("v.lsr");
    record(&addr, &rec, 10, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(30));
    server.terminate();
    let capture = livestream::config::CaptureConfig {
        width: 640,
        height: 480,
        fps: 30.0,
        format: PixelFormat::Rgb24,
    };
    let mut pattern =
        livestream::sources::test_pattern::TestPatternSource::new(&capture, 4).unwrap();
    let mut original = Frame::empty();
    for f in read_recording(&rec) {
        assert_eq!(
            f.info,
            FrameInfo::packed(PixelFormat::Rgb24, 640, 480).unwrap()
        );
        // The stamp survives JPEG: its cells are 10 pixels wide.
        let stamp =
            livestream::sources::test_pattern::read_stamp(&f).expect("stamp readable after JPEG");
        assert_eq!(stamp.seq, f.seq);
        pattern.frame_at(stamp.seq, stamp.capture_us, &mut original);
        let mse = original
            .data
            .iter()
            .zip(&f.data)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            / f.data.len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
        assert!(psnr > 30.0, "frame {}: PSNR {psnr:.1} dB", f.seq);
    }
}

/// `serve.http = false`: no HTTP on the port; a request is rejected like any
/// stranger, and native viewers still work.
#[test]
fn http_can_be_turned_off() {
    let (mut server, addr) = serve(&[
        "--width",
        "64",
        "--height",
        "16",
        "--set",
        "serve.http=false",
        SERVE_PLAINTEXT,
    ]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "answered HTTP: {:?}",
        String::from_utf8_lossy(&answer)
    );
    server.wait_stderr("bad magic", 1, Duration::from_secs(5));
    Proc::spawn(
        "view",
        &["view", &addr, VIEW_PLAINTEXT, "--frames", "3", "-q"],
    )
    .expect_success(Duration::from_secs(20));
    server.terminate();
}

/// A browser that stops reading its MJPEG stream holds at most a frame or two on
/// the server: a native viewer still gets every frame, and a second browser keeps
/// receiving.
#[test]
fn a_stalled_browser_harms_no_one() {
    let dir = temp_dir();
    // Photo content, ~100 KB a JPEG: the stalled browser's socket buffers fill in
    // seconds, and from then on the server drops frames for it.
    let (mut server, addr) = serve(&[
        "--source",
        "synthetic-camera",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        // The browsers' JPEG is the subject; a cheap native codec leaves the
        // cores to it (and keeps 30 fps in a debug build).
        "--codec",
        "lz4",
        SERVE_PLAINTEXT,
    ]);
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"GET /stream.mjpg HTTP/1.1\r\n\r\n")
        .unwrap();
    let rec = dir.path().join("native.lsr");
    let mut native = record(&addr, &rec, 90, &[VIEW_PLAINTEXT]);
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    let browser = std::process::Command::new(ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(format!("http://{addr}/stream.mjpg"))
        .args(["-frames:v", "60", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        browser.status.success(),
        "{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    native.expect_success(Duration::from_secs(30));
    assert_no_gaps(&rec, 90);
    let rss_mb = server.rss_kib() / 1024;
    assert!(
        rss_mb < 120,
        "server RSS {rss_mb} MB with a stalled browser"
    );
    // The stalled browser is still connected, dropping frames for itself only.
    wait_until(
        Duration::from_secs(30),
        Lazy(|| format!("the stalled browser to drop 11 frames: {}", stats(&addr))),
        || {
            stats(&addr)["viewers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["protocol"] == "http")
                .filter(|v| v["dropped"].as_u64() > Some(10))
                .map(|_| ())
        },
    );
    let rss_mb = server.rss_kib() / 1024;
    assert!(
        rss_mb < 150,
        "server RSS {rss_mb} MB with a stalled browser"
    );
    drop(stalled);
    server.terminate();
}

/// CPU time (ns) of the server's `http-jpeg` thread so far.
fn transcoder_cpu_ns(server: &Proc) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap();
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "http-jpeg" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
            return stat.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    panic!("no http-jpeg thread in the server");
}

/// With a non-JPEG native codec, JPEG for browsers is encoded only while one
/// watches: the transcoder uses (almost) no CPU before and after.
#[test]
fn jpeg_for_browsers_only_while_one_watches() {
    let (mut server, addr) = serve(&[
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        "--codec",
        "lz4",
        SERVE_PLAINTEXT,
    ]);
    // Transcoder CPU per frame over 30 frames of the stream, watched or not.
    let measure = |browser: bool| {
        let before = transcoder_cpu_ns(&server);
        if browser {
            let ffmpeg = which("ffmpeg").expect("ffmpeg is needed");
            let out = std::process::Command::new(ffmpeg)
                .args(["-v", "error", "-i"])
                .arg(format!("http://{addr}/stream.mjpg"))
                .args(["-frames:v", "30", "-f", "null", "-"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            Proc::spawn(
                "view",
                &["view", &addr, VIEW_PLAINTEXT, "--frames", "30", "-q"],
            )
            .expect_success(Duration::from_secs(20));
        }
        (transcoder_cpu_ns(&server) - before) as f64 / 1e6 / 30.0
    };
    let idle = measure(false);
    let busy = measure(true);
    // Encoding 720p JPEG costs milliseconds a frame; idle polling costs microseconds.
    assert!(
        busy > 0.5,
        "transcoder {busy:.3} ms/frame while a browser watched"
    );
    assert!(
        idle < busy / 20.0,
        "transcoder {idle:.3} ms/frame with no browser (vs {busy:.3} watching)"
    );
    server.terminate();
}

/// The page recovers by itself: it plays (over WebRTC), the server stops and
/// starts again on the same port, and the page plays again without a reload.
#[test]
fn the_page_recovers_by_itself_after_the_server_restarts() {
    use std::io::BufRead;
    let node = which("node").expect("node is needed");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/recover.mjs");
    let args = [
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "30",
        "--set",
        "serve.auth=\"pair\"",
    ];
    let (mut server, addr) = serve(&args);
    let url = server.page_url();
    let mut page = std::process::Command::new(node)
        .arg(&script)
        .arg(&url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    let stdout = page.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let first = said
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default();
    assert!(
        first.starts_with("playing"),
        "the page did not play: {first:?}"
    );
    server.terminate();
    // The same port and keys: the same token, which the page's cookie holds.
    let (mut server, _) = crate::util::serve_on(&addr, &args);
    let end = said
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_default();
    let _ = page.wait();
    let _ = reader.join();
    let result: serde_json::Value = serde_json::from_str(end.trim())
        .unwrap_or_else(|_| panic!("the page said {end:?}; server: {}", server.said()));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["before"], "WebRTC", "{result}");
    assert_eq!(result["after"], "WebRTC", "{result}");
    server.terminate();
}
