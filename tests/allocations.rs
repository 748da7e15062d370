//! The per-frame path allocates nothing: serve and view in this process, with an
//! allocator that counts, and compare allocations with frames over a steady stretch.
//! (Its own test binary, so no other test allocates meanwhile.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use livestream::bench::{CountingAlloc, ALLOCATIONS};
use livestream::config::{Config, ConfigText, Overrides};
use livestream::media::convert;
use livestream::media::frame::{Frame, PixelFormat};
use livestream::server::{RunningServer, ServeLimits};
use livestream::sinks::null::NullSink;
use livestream::viewer::{self, ViewOptions};
use wait::{wait_until, Lazy};

// The integration tests' deadlines (this is a test crate of its own).
#[path = "integration/wait.rs"]
mod wait;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Waits until the server has captured `n` frames. (Polling allocates nothing.)
fn wait_captured(server: &RunningServer, n: u64) {
    wait_until(
        Duration::from_secs(30),
        Lazy(|| {
            format!(
                "{n} frames captured (stalled at {})",
                server.frames_captured()
            )
        }),
        || (server.frames_captured() >= n).then_some(()),
    );
}

/// Allocations per frame with two viewers in steady state.
fn allocations_per_frame(codec: &str, source: &str, format: &str) -> f64 {
    let overrides = Overrides {
        source: Some(source.into()),
        codec: Some(codec.into()),
        listen: Some("127.0.0.1:0".into()),
        width: Some(320),
        height: Some(240),
        fps: Some(200.0),
        format: Some(format.into()),
        ..Default::default()
    };
    // The default: paired and encrypted, with keys in the test's own directory.
    let keys = tempfile::tempdir().unwrap();
    let mut cfg = Config::parse(ConfigText::embedded(), &overrides).unwrap();
    assert_eq!(cfg.serve.auth, livestream::config::Auth::Pair);
    cfg.serve.key_dir = Some(keys.path().join("server"));
    let server = RunningServer::start(&cfg, ServeLimits::default()).unwrap();
    cfg.view.pair = Some(server.auth().unwrap().code());
    let addr = server.local_addr().to_string();
    let stop = AtomicBool::new(false);
    let per_frame = std::thread::scope(|s| {
        for i in 0..2 {
            let mut cfg = cfg.clone();
            cfg.view.key_dir = Some(keys.path().join(format!("viewer-{i}")));
            let (addr, stop) = (&addr, &stop);
            s.spawn(move || {
                let opts = ViewOptions {
                    frames: None,
                    duration: None,
                    quiet: true,
                    reconnect: false,
                    limits: cfg.view.limits,
                    latency_log: None,
                };
                viewer::run(addr, &mut NullSink::default(), &cfg, &opts, stop).unwrap()
            });
        }
        // Warm up: connections made, pools and buffers grown.
        let start = server.frames_captured();
        wait_captured(&server, start + 100);
        let (a0, f0) = (ALLOCATIONS.load(Ordering::SeqCst), server.frames_captured());
        wait_captured(&server, f0 + 300);
        let (a1, f1) = (ALLOCATIONS.load(Ordering::SeqCst), server.frames_captured());
        stop.store(true, Ordering::SeqCst);
        (a1 - a0) as f64 / (f1 - f0) as f64
    });
    server.stop().unwrap();
    per_frame
}

/// Allocations made by every `convert` function on every uncompressed format, with
/// its buffers grown by a first call.
fn conversion_allocations() -> Vec<String> {
    let (w, h) = (1920u32, 1080u32);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 97 % 256) as u8).collect();
    let mut found = Vec::new();
    for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
        let (mut src, mut dst) = (Frame::empty(), Frame::empty());
        let (mut bytes, mut pixels, mut planar) = (Vec::new(), Vec::new(), Vec::new());
        convert::from_rgb24(&rgb, w, h, format, &mut src);
        let mut count = |name: &str, call: &mut dyn FnMut()| {
            call();
            let a0 = ALLOCATIONS.load(Ordering::SeqCst);
            call();
            let n = ALLOCATIONS.load(Ordering::SeqCst) - a0;
            if n > 0 {
                found.push(format!("{format} {name}: {n} allocations"));
            }
        };
        count("from_rgb24", &mut || {
            convert::from_rgb24(&rgb, w, h, format, &mut dst)
        });
        count("to_rgb24", &mut || {
            assert!(convert::to_rgb24(&src, &mut bytes))
        });
        count("to_xrgb_u32", &mut || {
            assert!(convert::to_xrgb_u32(&src, &mut Vec::new(), &mut pixels))
        });
        count("to_planar", &mut || {
            assert!(convert::to_planar(&src, &mut planar).is_some())
        });
        count("to_i420", &mut || {
            assert!(convert::to_i420(&src, &mut bytes, &mut planar))
        });
    }
    found
}

/// Allocations in 59 pushes of H.264 access units (from our encoder) into the
/// fragmented-MP4 writer, once the caller's buffer has grown.
#[cfg(feature = "h264")]
fn mp4_allocations() -> u64 {
    use livestream::config::CaptureConfig;
    use livestream::media::mp4::Fmp4Writer;
    use livestream::sources::test_pattern::TestPatternSource;
    use livestream::sources::FrameSource;
    let cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
    let table = cfg.backend(livestream::backend::Kind::Codec, "h264");
    let mut codec = (livestream::registry::codec("h264").unwrap().open)(&table).unwrap();
    let capture = CaptureConfig {
        width: 320,
        height: 240,
        fps: 30.0,
        format: PixelFormat::I420,
    };
    let mut pattern = TestPatternSource::new(&capture, 4).unwrap();
    codec.begin(&pattern.stream_info()).unwrap();
    let mut frame = Frame::empty();
    let units: Vec<(Vec<u8>, u64)> = (0..60)
        .map(|_| {
            pattern.next_frame(&mut frame).unwrap();
            let mut au = Vec::new();
            codec.encode(&frame, &mut au).unwrap();
            (au, frame.capture_us)
        })
        .collect();
    let mut writer = Fmp4Writer::new();
    let largest = units.iter().map(|(au, _)| au.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(largest + 4096);
    writer.push(&units[0].0, units[0].1, &mut out).unwrap();
    let a0 = ALLOCATIONS.load(Ordering::SeqCst);
    for (au, t) in &units[1..] {
        out.clear();
        writer.push(au, *t, &mut out).unwrap();
    }
    ALLOCATIONS.load(Ordering::SeqCst) - a0
}

/// The counter counts (else every measurement below would pass): `alloc`,
/// `alloc_zeroed` and `realloc` each.
fn assert_counting() {
    let counted = |what: &str, call: &mut dyn FnMut()| {
        let a0 = ALLOCATIONS.load(Ordering::SeqCst);
        call();
        assert!(
            ALLOCATIONS.load(Ordering::SeqCst) > a0,
            "{what} was not counted"
        );
    };
    let mut v: Vec<u8> = Vec::new();
    counted("alloc", &mut || {
        v = std::hint::black_box(Vec::with_capacity(16))
    });
    counted("alloc_zeroed", &mut || {
        drop(std::hint::black_box(vec![0u8; 4096]))
    });
    counted("realloc", &mut || v.reserve_exact(1 << 20));
}

/// One test, so nothing else in this binary allocates while it measures.
#[test]
fn steady_state_allocates_nothing_per_frame() {
    assert_counting();
    let mut cases = vec![
        ("raw", "test-pattern", "rgb24"),
        ("bincode", "test-pattern", "yuyv"),
        ("raw", "synthetic-camera", "nv12"),
        ("raw", "test-pattern", "i420"),
    ];
    // H.264 both ways: our side of it (openh264's own C++ allocations are not
    // counted by a Rust allocator; see docs/architecture.md).
    if cfg!(feature = "h264") {
        cases.push(("h264", "test-pattern", "rgb24"));
        cases.push(("h264", "synthetic-camera", "yuyv"));
    }
    for (codec, source, format) in cases {
        let n = allocations_per_frame(codec, source, format);
        eprintln!("{codec}/{source}/{format}: {n:.3} allocations per frame");
        assert!(
            n < 0.05,
            "{codec}/{source}/{format}: {n:.3} allocations per frame"
        );
    }
    // lz4_flex allocates its 16 KiB hash table per compress call (its API takes
    // no reusable table): one allocation per frame on the server, documented in
    // docs/architecture.md. Anything more would be ours.
    let n = allocations_per_frame("lz4", "test-pattern", "rgb24");
    eprintln!("lz4/test-pattern/rgb24: {n:.3} allocations per frame");
    assert!(n < 1.05, "lz4: {n:.3} allocations per frame");
    #[cfg(feature = "h264")]
    {
        let n = mp4_allocations();
        eprintln!("mp4 writer: {n} allocations in 59 pushes");
        assert_eq!(n, 0, "the MP4 writer allocated per frame");
    }
    // Pixel conversion (yuvutils-rs inside) on its own, at 1080p.
    let found = conversion_allocations();
    assert!(found.is_empty(), "{}", found.join("\n"));
}
