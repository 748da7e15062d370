//! `livestream bench`: serve → view on loopback, in one process, for each codec,
//! size and content, unpaced and paced. Reports fps, CPU per frame on each side
//! (from the kernel's per-thread run time), bytes per frame, latency from capture
//! to presented at the sink, and heap allocations per frame in steady state.
//! `livestream bench --convert` measures pixel conversion alone ([`convert`]).

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use crate::config::{Config, ConfigError};
use crate::error::{BackendError, SourceError};
use crate::registry::UnknownBackend;
use crate::server::ServeError;
use crate::viewer::ViewError;

pub mod alloc;
pub mod convert;
pub mod encode;
mod loopback;
pub mod rtsp;
pub mod seal;

pub use alloc::{CountingAlloc, ALLOCATIONS};
pub use loopback::{measure, BenchResult, Case};

/// Why a bench could not run. Each wraps the error of the part that failed, so
/// the message is that part's own.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("size `{0}` is not WIDTHxHEIGHT")]
    NotASize(String),
    #[error("bad width in `{0}`")]
    Width(String),
    #[error("bad height in `{0}`")]
    Height(String),
    #[error("pace `{0}` is not `unpaced` or a frame rate")]
    Pace(String),
    #[error("unknown content `{0}`: expected test-pattern or photo")]
    Content(String),
    #[error("unknown auth `{0}`: expected pair or none")]
    Auth(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Unknown(#[from] UnknownBackend),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    View(#[from] ViewError),
    /// The viewer thread could not be started.
    #[error(transparent)]
    Thread(#[from] std::io::Error),
    #[error("viewer panicked")]
    ViewerPanicked,
    /// `bench --seal`: the in-memory handshake failed.
    #[error("the in-memory Noise handshake: {0}")]
    Noise(#[from] snow::Error),
    #[error(transparent)]
    Unfinished(#[from] crate::secure::Unfinished),
    #[error("sealed records: {0}")]
    Records(#[source] std::io::Error),
    #[error("opened records differ from what was sealed")]
    RecordsDiffer,
    #[error("encoding the JPEG payload: {0}")]
    Codec(#[from] crate::error::CodecError),
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

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
    /// Measure the codecs alone instead: --frames frames of each content and
    /// size, encoded and decoded (bitrate at 30 fps, bits per pixel, Y-PSNR,
    /// CPU per frame).
    #[arg(long)]
    encode: bool,
    /// Frames per run of --encode.
    #[arg(long, default_value_t = 150)]
    frames: usize,
    /// With --encode: also write each run's source frames as DIR/CONTENT-WxH.y4m
    /// (for another encoder: scripts/bench-h264.sh).
    #[arg(long, value_name = "DIR")]
    y4m: Option<std::path::PathBuf>,
    /// Measure RTSP instead: H.264 at 30 fps (--sizes, --content) to clients
    /// over TCP and UDP: server CPU per frame with 1 and --clients receiving
    /// clients, and latency capture → decoded in ffmpeg beside the native
    /// viewer's (test pattern).
    #[arg(long)]
    rtsp: bool,
    /// Receiving clients for --rtsp.
    #[arg(long, default_value_t = 16)]
    clients: usize,
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
        join_ms: mid(&|r| r.join_ms),
        ..runs[0].clone()
    }
}

/// `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(u32, u32), BenchError> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| BenchError::NotASize(s.into()))?;
    Ok((
        w.parse().map_err(|_| BenchError::Width(s.into()))?,
        h.parse().map_err(|_| BenchError::Height(s.into()))?,
    ))
}

/// `unpaced` (0) or a frame rate.
fn parse_pace(p: &str) -> Result<f64, BenchError> {
    match p {
        "unpaced" => Ok(0.0),
        n => n.parse::<f64>().map_err(|_| BenchError::Pace(n.into())),
    }
}

/// Runs `livestream bench` as `args` ask, printing Markdown tables; a stop
/// request (Ctrl-C) ends it after the case under way.
pub fn run(base: &Config, args: &BenchArgs, stop: &AtomicBool) -> Result<(), BenchError> {
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
    if args.rtsp {
        let what = rtsp::RtspArgs {
            sizes: &sizes,
            contents: &args.content,
            seconds: args.seconds,
            clients: args.clients.max(1),
        };
        return rtsp::run(base, &what, stop);
    }
    if args.encode {
        let what = encode::EncodeArgs {
            codecs: &args.codecs,
            contents: &args.content,
            sizes: &sizes,
            frames: args.frames,
            y4m: args.y4m.as_ref(),
        };
        return encode::run(base, &what, stop).map(|_| ());
    }
    let paces = args
        .pace
        .iter()
        .map(|p| parse_pace(p))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "| codec | auth | content | size | pace | fps | server CPU ms/frame | (source ms | encode ms) | viewer CPU ms/frame | KB/frame | latency p50 ms | p99 ms | dropped server/viewer | allocs/frame | present p50 / p99 ms | join → picture ms |"
    );
    println!("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut done = Vec::new();
    for case in cases(args, &sizes, &paces) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let runs = (0..args.repeat.unwrap_or(1).max(1))
            .map(|_| measure(base, &case))
            .collect::<Result<Vec<_>, _>>()?;
        let r = median(&runs);
        println!("{}", row(&r));
        done.push(r);
    }
    // Where the time goes: each stage's p50 / p95 / p99 (docs/latency.md).
    println!();
    println!(
        "| codec | auth | content | size | pace | total p50 / p95 / p99 ms | encode | queue | network | decode | present |"
    );
    println!("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &done {
        println!("{}", stage_row(r));
    }
    Ok(())
}

/// Every case `args` ask for, in the order of the table: by codec, auth,
/// content, size, then pace.
fn cases<'a>(args: &'a BenchArgs, sizes: &[(u32, u32)], paces: &[f64]) -> Vec<Case<'a>> {
    let mut all = Vec::new();
    for codec in &args.codecs {
        for auth in &args.auth {
            for content in &args.content {
                for &size in sizes {
                    for &fps in paces {
                        all.push(Case {
                            codec,
                            auth,
                            content,
                            size,
                            fps,
                            format: &args.format,
                            sink: &args.sink,
                            seconds: args.seconds,
                        });
                    }
                }
            }
        }
    }
    all
}

/// The pace column: the frame rate, or `unpaced`.
fn pace(fps: f64) -> String {
    if fps > 0.0 {
        format!("{fps}")
    } else {
        "unpaced".into()
    }
}

/// A case's line in the main table.
fn row(r: &BenchResult) -> String {
    format!(
        "| {} | {} | {} | {}x{} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {}/{} | {:.2} | {:.2} / {:.2} | {:.1} |",
        r.codec,
        r.auth,
        r.content,
        r.size.0,
        r.size.1,
        pace(r.fps_target),
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
        r.present_p99_ms,
        r.join_ms
    )
}

/// A case's line in the table of stages.
fn stage_row(r: &BenchResult) -> String {
    let stages: Vec<String> = r
        .stages
        .iter()
        .map(|(_, [a, b, c])| format!("{a:.2} / {b:.2} / {c:.2}"))
        .collect();
    format!(
        "| {} | {} | {} | {}x{} | {} | {:.2} / {:.2} / {:.2} | {} |",
        r.codec,
        r.auth,
        r.content,
        r.size.0,
        r.size.1,
        pace(r.fps_target),
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        stages.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn args(flags: &[&str]) -> BenchArgs {
        let mut all = vec!["bench"];
        all.extend_from_slice(flags);
        Cmd::try_parse_from(all).unwrap().args
    }

    fn result(codec: &str, fps: f64, p50: f64) -> BenchResult {
        BenchResult {
            codec: codec.into(),
            auth: "pair".into(),
            content: "photo".into(),
            size: (640, 480),
            fps_target: 0.0,
            fps,
            server_cpu_ms: 1.0,
            source_ms: 0.5,
            encode_ms: 0.25,
            viewer_cpu_ms: 2.0,
            bytes_per_frame: 2048.0,
            p50_ms: p50,
            p95_ms: 3.0,
            p99_ms: 4.0,
            stages: vec![("encode", [0.1, 0.2, 0.3]), ("decode", [1.0, 2.0, 3.0])],
            present_p50_ms: 0.5,
            present_p99_ms: 0.75,
            dropped_server: 7,
            dropped_viewer: 1,
            allocs_per_frame: 0.0,
            join_ms: 40.0,
        }
    }

    #[test]
    fn sizes_and_paces_parse_or_say_what_is_wrong() {
        assert_eq!(parse_size("640x480").unwrap(), (640, 480));
        for (bad, says) in [
            ("640", "size `640` is not WIDTHxHEIGHT"),
            ("wx480", "bad width in `wx480`"),
            ("640x", "bad height in `640x`"),
        ] {
            assert_eq!(parse_size(bad).unwrap_err().to_string(), says);
        }
        assert_eq!(parse_pace("unpaced").unwrap(), 0.0);
        assert_eq!(parse_pace("30").unwrap(), 30.0);
        assert_eq!(
            parse_pace("fast").unwrap_err().to_string(),
            "pace `fast` is not `unpaced` or a frame rate"
        );
    }

    #[test]
    fn cases_go_by_codec_auth_content_size_then_pace() {
        let a = args(&[
            "--codecs",
            "raw,lz4",
            "--content",
            "photo",
            "--pace",
            "unpaced,30",
        ]);
        let cases = cases(&a, &[(64, 48)], &[0.0, 30.0]);
        let order: Vec<(&str, f64)> = cases.iter().map(|c| (c.codec, c.fps)).collect();
        assert_eq!(
            order,
            [("raw", 0.0), ("raw", 30.0), ("lz4", 0.0), ("lz4", 30.0)]
        );
        assert!(cases
            .iter()
            .all(|c| c.auth == "pair" && c.sink == "null" && c.format == "rgb24"));
    }

    #[test]
    fn rows_keep_the_documented_columns() {
        let r = result("lz4", 29.96, 1.234);
        assert_eq!(
            row(&r),
            "| lz4 | pair | photo | 640x480 | unpaced | 30.0 | 1.00 | 0.50 | 0.25 | 2.00 | 2.0 | 1.23 | 4.00 | 7/1 | 0.00 | 0.50 / 0.75 | 40.0 |"
        );
        let r = BenchResult {
            fps_target: 30.0,
            ..r
        };
        assert_eq!(
            stage_row(&r),
            "| lz4 | pair | photo | 640x480 | 30 | 1.23 / 3.00 / 4.00 | 0.10 / 0.20 / 0.30 | 1.00 / 2.00 / 3.00 |"
        );
    }

    #[test]
    fn median_takes_each_column_apart() {
        let runs = [
            result("raw", 10.0, 9.0),
            result("raw", 30.0, 1.0),
            result("raw", 20.0, 5.0),
        ];
        let m = median(&runs);
        assert_eq!((m.fps, m.p50_ms), (20.0, 5.0));
        assert_eq!(m.codec, "raw");
    }
}
