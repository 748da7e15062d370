//! `livestream bench`: serve → view on loopback, in one process, for each codec,
//! size and content, unpaced and paced. Reports fps, CPU per frame on each side
//! (from the kernel's per-thread run time), bytes per frame, latency from capture
//! to presented at the sink, and heap allocations per frame in steady state.
//! `livestream bench --convert` measures pixel conversion alone ([`convert`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::{Config, Overrides};
use crate::server::{RunningServer, ServeLimits};
use crate::viewer::{self, ViewOptions};

pub mod alloc;
pub mod convert;
pub mod seal;

pub use alloc::{CountingAlloc, ALLOCATIONS};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Codecs to measure.
    #[arg(long, value_delimiter = ',', default_value = "raw,lz4,bincode")]
    codecs: Vec<String>,
    /// Frame sizes, WIDTHxHEIGHT.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "640x480,1280x720,1920x1080"
    )]
    sizes: Vec<String>,
    /// Content: test-pattern (flat, compresses well) and/or photo (synthetic-camera).
    #[arg(long, value_delimiter = ',', default_value = "test-pattern,photo")]
    content: Vec<String>,
    /// Pacing: unpaced (as fast as possible) and/or a frame rate such as 30.
    #[arg(long, value_delimiter = ',', default_value = "unpaced,30")]
    pace: Vec<String>,
    /// Native connection: `pair` (paired and encrypted, the default of `serve`)
    /// and/or `none` (plaintext).
    #[arg(long, value_delimiter = ',', default_value = "pair")]
    auth: Vec<String>,
    /// Pixel format of the source.
    #[arg(long, default_value = "rgb24")]
    format: String,
    /// Seconds measured per case (after one second of warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// The viewer's sink: `null`, or a window sink (`window`, `x11`, `minifb`, `sdl2`) to
    /// measure presenting.
    #[arg(long, default_value = "null")]
    sink: String,
    /// Runs of each case; the table shows the median of each column
    /// [default: 1; 25 with --convert].
    #[arg(long)]
    repeat: Option<usize>,
    /// Measure pixel conversion instead: one frame of photo content per size (from
    /// --sizes), converted to and from every format by the plain loops and by
    /// yuvutils-rs.
    #[arg(long)]
    convert: bool,
    /// Measure encryption instead: one photo frame per size (from --sizes), raw
    /// and as JPEG, sealed into records and opened again, with each cipher.
    #[arg(long)]
    seal: bool,
}

/// One measured case.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub codec: String,
    pub auth: String,
    pub content: String,
    pub size: (u32, u32),
    pub fps_target: f64,
    pub fps: f64,
    pub server_cpu_ms: f64,
    /// CPU time in the source (generating or capturing) per captured frame.
    pub source_ms: f64,
    /// CPU time in the encoder per encoded frame.
    pub encode_ms: f64,
    pub viewer_cpu_ms: f64,
    pub bytes_per_frame: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Latency by stage (encode, queue, network, decode, present): p50, p95,
    /// p99 in ms.
    pub stages: Vec<(&'static str, [f64; 3])>,
    /// Time in the sink's `present`, median and 99th percentile.
    pub present_p50_ms: f64,
    pub present_p99_ms: f64,
    /// Frames the server skipped for the viewer, and frames the viewer skipped.
    pub dropped_server: u64,
    pub dropped_viewer: u64,
    pub allocs_per_frame: f64,
}

/// CPU time (ns) per thread of this process, keyed by thread id, with names.
fn thread_cpu() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let path = task.path();
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert(tid, (name, ns));
    }
    out
}

fn is_server_thread(name: &str) -> bool {
    name == "capture"
        || name == "accept"
        || name.starts_with("viewer-")
        || name.starts_with("encode-")
        || name == "http-jpeg"
}

/// A bench case's key directory, removed when the case is done.
struct KeyDir(std::path::PathBuf);

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CPU used between two snapshots, split into (server, viewer) threads, in ns.
fn cpu_split(
    before: &HashMap<u64, (String, u64)>,
    after: &HashMap<u64, (String, u64)>,
) -> (u64, u64) {
    let (mut server, mut view) = (0, 0);
    for (tid, (name, ns)) in after {
        let used = ns - before.get(tid).map_or(0, |b| b.1.min(*ns));
        if is_server_thread(name) {
            server += used;
        } else if name == "net-reader" || name == "bench-view" {
            view += used;
        }
    }
    (server, view)
}

#[allow(clippy::too_many_arguments)]
pub fn measure(
    base: &Config,
    sink: &str,
    codec: &str,
    auth: &str,
    content: &str,
    (width, height): (u32, u32),
    fps: f64,
    format: &str,
    seconds: f64,
) -> Result<BenchResult, String> {
    let source = match content {
        "test-pattern" => "test-pattern",
        "photo" => "synthetic-camera",
        other => {
            return Err(format!(
                "unknown content `{other}`: expected test-pattern or photo"
            ))
        }
    };
    let overrides = Overrides {
        source: Some(source.into()),
        codec: Some(codec.into()),
        listen: Some("127.0.0.1:0".into()),
        width: Some(width),
        height: Some(height),
        fps: Some(fps),
        format: Some(format.into()),
        ..Default::default()
    };
    let mut cfg = Config::parse(base.text.clone(), &overrides).map_err(|e| e.to_string())?;
    // Keys for this case only, paired at once: the user's own are not touched.
    let keys = match auth {
        "pair" => {
            static CASE: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "livestream-bench-{}-{}",
                std::process::id(),
                CASE.fetch_add(1, Ordering::Relaxed)
            ));
            cfg.serve.auth = crate::config::Auth::Pair;
            cfg.view.auth = crate::config::Auth::Pair;
            cfg.serve.key_dir = Some(dir.join("server"));
            cfg.view.key_dir = Some(dir.join("viewer"));
            Some(KeyDir(dir))
        }
        "none" => {
            cfg.serve.auth = crate::config::Auth::None;
            cfg.view.auth = crate::config::Auth::None;
            None
        }
        other => return Err(format!("unknown auth `{other}`: expected pair or none")),
    };
    let server = RunningServer::start(&cfg, ServeLimits::default()).map_err(|e| e.to_string())?;
    cfg.view.pair = server.auth().map(|a| a.code());
    let _keys = keys;
    let address = server.local_addr().to_string();
    let stop = AtomicBool::new(false);
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs_f64(seconds);

    let result = std::thread::scope(|scope| {
        let view = std::thread::Builder::new()
            .name("bench-view".into())
            .spawn_scoped(scope, || {
                let backend = crate::registry::sink(sink).map_err(|e| e.to_string())?;
                let mut sink = (backend.open)(&cfg.backend(crate::backend::Kind::Sink, sink))
                    .map_err(|e| e.to_string())?;
                let opts = ViewOptions {
                    frames: None,
                    duration: Some(warmup + measured + Duration::from_millis(500)),
                    quiet: true,
                    reconnect: false,
                    limits: cfg.view.limits,
                    latency_log: None,
                };
                viewer::run(&address, sink.as_mut(), &cfg, &opts, &stop).map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())?;
        std::thread::sleep(warmup);
        let cpu0 = thread_cpu();
        let timing0 = server.timing();
        let (frames0, bytes0) = server
            .viewer_stats()
            .first()
            .map_or((0, 0), |v| (v.sent, v.bytes));
        // Last, after everything here that allocates.
        let allocs0 = ALLOCATIONS.load(Ordering::Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(measured);
        // Before reading /proc, which allocates.
        let allocs1 = ALLOCATIONS.load(Ordering::Relaxed);
        let cpu1 = thread_cpu();
        let elapsed = t0.elapsed().as_secs_f64();
        let timing1 = server.timing();
        let captured = (timing1.frames - timing0.frames).max(1) as f64;
        let stats = server.viewer_stats();
        let frames = stats.first().map_or(0, |v| v.sent) - frames0;
        let bytes = stats.first().map_or(0, |v| v.bytes) - bytes0;
        let report = view
            .join()
            .map_err(|_| "viewer panicked".to_string())?
            .map_err(|e| e.to_string())?;
        let (server_ns, view_ns) = cpu_split(&cpu0, &cpu1);
        let per = |v: f64| {
            if frames > 0 {
                v / frames as f64
            } else {
                f64::NAN
            }
        };
        Ok(BenchResult {
            codec: codec.into(),
            auth: auth.into(),
            content: content.into(),
            size: (width, height),
            fps_target: fps,
            fps: frames as f64 / elapsed,
            server_cpu_ms: per(server_ns as f64 / 1e6),
            source_ms: (timing1.source_ns - timing0.source_ns) as f64 / 1e6 / captured,
            // Per frame encoded: with several encoders, frames none was free for
            // are captured but never encoded.
            encode_ms: (timing1.encode_ns - timing0.encode_ns) as f64
                / 1e6
                / (captured - (timing1.encoder_dropped - timing0.encoder_dropped) as f64).max(1.0),
            viewer_cpu_ms: per(view_ns as f64 / 1e6),
            bytes_per_frame: per(bytes as f64),
            p50_ms: report.latency.percentile(0.5).unwrap_or(f64::NAN) / 1000.0,
            p95_ms: report.latency.percentile(0.95).unwrap_or(f64::NAN) / 1000.0,
            p99_ms: report.latency.percentile(0.99).unwrap_or(f64::NAN) / 1000.0,
            stages: report
                .stages
                .all()
                .iter()
                .map(|(name, h)| {
                    let ms = |p: f64| h.percentile(p).unwrap_or(f64::NAN) / 1000.0;
                    (*name, [ms(0.5), ms(0.95), ms(0.99)])
                })
                .collect(),
            present_p50_ms: report.present.percentile(0.5).unwrap_or(f64::NAN) / 1000.0,
            present_p99_ms: report.present.percentile(0.99).unwrap_or(f64::NAN) / 1000.0,
            dropped_server: report.dropped_upstream,
            dropped_viewer: report.dropped_here,
            allocs_per_frame: per((allocs1 - allocs0) as f64),
        })
    });
    server.stop().map_err(|e| e.to_string())?;
    result
}

/// The median of every column over several runs of one case.
fn median(runs: &[BenchResult]) -> BenchResult {
    let mid = |f: &dyn Fn(&BenchResult) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    BenchResult {
        fps: mid(&|r| r.fps),
        server_cpu_ms: mid(&|r| r.server_cpu_ms),
        source_ms: mid(&|r| r.source_ms),
        encode_ms: mid(&|r| r.encode_ms),
        viewer_cpu_ms: mid(&|r| r.viewer_cpu_ms),
        bytes_per_frame: mid(&|r| r.bytes_per_frame),
        p50_ms: mid(&|r| r.p50_ms),
        p95_ms: mid(&|r| r.p95_ms),
        p99_ms: mid(&|r| r.p99_ms),
        stages: runs[0]
            .stages
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                (
                    *name,
                    [0, 1, 2].map(|q| mid(&|r: &BenchResult| r.stages[i].1[q])),
                )
            })
            .collect(),
        present_p50_ms: mid(&|r| r.present_p50_ms),
        present_p99_ms: mid(&|r| r.present_p99_ms),
        dropped_server: mid(&|r| r.dropped_server as f64) as u64,
        dropped_viewer: mid(&|r| r.dropped_viewer as f64) as u64,
        allocs_per_frame: mid(&|r| r.allocs_per_frame),
        ..runs[0].clone()
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("size `{s}` is not WIDTHxHEIGHT"))?;
    Ok((
        w.parse().map_err(|_| format!("bad width in `{s}`"))?,
        h.parse().map_err(|_| format!("bad height in `{s}`"))?,
    ))
}

pub fn run(base: &Config, args: &BenchArgs, stop: &AtomicBool) -> Result<(), String> {
    let sizes = args
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<Result<Vec<_>, _>>()?;
    if args.seal {
        return seal::run(base, &sizes, args.repeat.unwrap_or(25), stop);
    }
    if args.convert {
        return convert::run(base, &sizes, args.repeat.unwrap_or(25), stop).map(|_| ());
    }
    let paces = args
        .pace
        .iter()
        .map(|p| match p.as_str() {
            "unpaced" => Ok(0.0),
            n => n
                .parse::<f64>()
                .map_err(|_| format!("pace `{n}` is not `unpaced` or a frame rate")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "| codec | auth | content | size | pace | fps | server CPU ms/frame | (source ms | encode ms) | viewer CPU ms/frame | KB/frame | latency p50 ms | p99 ms | dropped server/viewer | allocs/frame | present p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut done = Vec::new();
    for codec in &args.codecs {
        for auth in &args.auth {
            for content in &args.content {
                for &size in &sizes {
                    for &fps in &paces {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let runs = (0..args.repeat.unwrap_or(1).max(1))
                            .map(|_| {
                                measure(
                                    base,
                                    &args.sink,
                                    codec,
                                    auth,
                                    content,
                                    size,
                                    fps,
                                    &args.format,
                                    args.seconds,
                                )
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let r = median(&runs);
                        println!(
                        "| {} | {} | {} | {}x{} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {}/{} | {:.2} | {:.2} / {:.2} |",
                        r.codec,
                        r.auth,
                        r.content,
                        r.size.0,
                        r.size.1,
                        if fps > 0.0 { format!("{fps}") } else { "unpaced".into() },
                        r.fps,
                        r.server_cpu_ms,
                        r.source_ms,
                        r.encode_ms,
                        r.viewer_cpu_ms,
                        r.bytes_per_frame / 1024.0,
                        r.p50_ms,
                        r.p99_ms,
                        r.dropped_server,
                        r.dropped_viewer,
                        r.allocs_per_frame,
                        r.present_p50_ms,
                        r.present_p99_ms
                    );
                        done.push((fps, r));
                    }
                }
            }
        }
    }
    // Where the time goes: each stage's p50 / p95 / p99 (docs/latency.md).
    println!();
    println!(
        "| codec | auth | content | size | pace | total p50 / p95 / p99 ms | encode | queue | network | decode | present |"
    );
    println!("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (fps, r) in done {
        let stages: Vec<String> = r
            .stages
            .iter()
            .map(|(_, [a, b, c])| format!("{a:.2} / {b:.2} / {c:.2}"))
            .collect();
        println!(
            "| {} | {} | {} | {}x{} | {} | {:.2} / {:.2} / {:.2} | {} |",
            r.codec,
            r.auth,
            r.content,
            r.size.0,
            r.size.1,
            if fps > 0.0 {
                format!("{fps}")
            } else {
                "unpaced".into()
            },
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            stages.join(" | ")
        );
    }
    Ok(())
}
