//! `livestream bench --encode`: what a codec makes of a run of camera-like
//! frames, alone (no network): bitrate at 30 fps, bits per pixel, Y-PSNR of the
//! decoded pictures against the source, and the CPU time of each encode and
//! decode. `--y4m DIR` also writes the source frames as Y4M, so that another
//! encoder can be run on the same frames (`scripts/bench-h264.sh` runs x264).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{BenchError, ALLOCATIONS};
use crate::backend::Kind;
use crate::codecs::{FrameCodec, Payload};
use crate::config::{Config, Overrides};
use crate::media::clock;
use crate::media::convert;
use crate::media::frame::{Frame, StreamInfo};
use crate::media::quality::{luma, psnr};
use crate::registry;

/// The frame rate the bitrate is given at, and rate control is set up for.
const FPS: f64 = 30.0;

/// One codec on one run of frames.
#[derive(Debug, Clone)]
pub struct EncodeResult {
    pub codec: String,
    pub content: String,
    pub size: (u32, u32),
    pub frames: usize,
    pub mbit_per_s: f64,
    pub bits_per_pixel: f64,
    /// Mean Y-PSNR of the decoded pictures against the source, dB.
    pub psnr_y: f64,
    /// Median CPU time per frame of the calling thread, ms (with encoder
    /// threads, the rest of the work is on theirs).
    pub encode_ms: f64,
    /// Median wall time per encode call, ms: what a frame waits for.
    pub encode_wall_ms: f64,
    pub decode_ms: f64,
    /// Heap allocations per encode call, after the first ten frames.
    pub encode_allocs: f64,
    pub keyframes: usize,
}

/// `frames` frames of `content` (`photo`: the synthetic camera, a photo with
/// sensor noise; `test-pattern`) at `size`, as `serve` would capture them.
fn capture(
    base: &Config,
    content: &str,
    (width, height): (u32, u32),
    frames: usize,
) -> Result<Vec<Frame>, BenchError> {
    let name = match content {
        "photo" => "synthetic-camera",
        "test-pattern" => "test-pattern",
        other => return Err(BenchError::Content(other.into())),
    };
    let overrides = Overrides {
        source: Some(name.into()),
        width: Some(width),
        height: Some(height),
        fps: Some(0.0),
        ..Default::default()
    };
    let cfg = Config::parse(base.text.clone(), &overrides)?;
    let backend = registry::source(name)?;
    let mut source = (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, name))?;
    let mut out = Vec::with_capacity(frames);
    for _ in 0..frames {
        let mut f = Frame::empty();
        source.next_frame(&mut f)?;
        out.push(f);
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn open(base: &Config, name: &str) -> Result<Box<dyn FrameCodec>, BenchError> {
    let backend = registry::codec(name)?;
    Ok((backend.open)(&base.backend(Kind::Codec, name))?)
}

/// Encodes and decodes `frames` with `codec`.
fn measure(
    base: &Config,
    codec_name: &str,
    content: &str,
    frames: &[Frame],
) -> Result<EncodeResult, BenchError> {
    let info = frames[0].info;
    let mut encoder = open(base, codec_name)?;
    let mut decoder = open(base, codec_name)?;
    encoder.begin(&StreamInfo {
        frame: info,
        fps: FPS,
    })?;
    let (mut out, mut decoded) = (Vec::new(), Frame::empty());
    let (mut rgb, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    let (mut enc_ms, mut dec_ms, mut psnrs) = (Vec::new(), Vec::new(), Vec::new());
    let mut enc_wall_ms = Vec::new();
    let (mut bytes, mut keyframes, mut allocs) = (0usize, 0usize, 0u64);
    for (i, f) in frames.iter().enumerate() {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let (t0, wall) = (clock::thread_cpu_ns(), std::time::Instant::now());
        let e = encoder.encode(f, &mut out)?;
        enc_wall_ms.push(wall.elapsed().as_secs_f64() * 1e3);
        enc_ms.push((clock::thread_cpu_ns() - t0) as f64 / 1e6);
        if i >= 10 {
            allocs += ALLOCATIONS.load(Ordering::Relaxed) - before;
        }
        let mut payload = match e.payload {
            Payload::Written => std::mem::take(&mut out),
            Payload::Passthrough => f.data.clone(),
            Payload::Skipped => continue,
        };
        bytes += payload.len();
        keyframes += e.keyframe as usize;
        decoded.info = info;
        let t0 = clock::thread_cpu_ns();
        decoder.decode(&mut payload, &mut decoded)?;
        dec_ms.push((clock::thread_cpu_ns() - t0) as f64 / 1e6);
        out = payload;
        if luma(f, &mut rgb, &mut a) && luma(&decoded, &mut rgb, &mut b) {
            psnrs.push(psnr(&a, &b));
        }
    }
    let n = frames.len();
    let pixels = info.width as f64 * info.height as f64;
    Ok(EncodeResult {
        codec: codec_name.into(),
        content: content.into(),
        size: (info.width, info.height),
        frames: n,
        mbit_per_s: bytes as f64 * 8.0 / n as f64 * FPS / 1e6,
        bits_per_pixel: bytes as f64 * 8.0 / n as f64 / pixels,
        psnr_y: psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64,
        encode_ms: median(enc_ms),
        encode_wall_ms: median(enc_wall_ms),
        decode_ms: median(dec_ms),
        encode_allocs: allocs as f64 / n.saturating_sub(10).max(1) as f64,
        keyframes,
    })
}

/// Writes `frames` as a Y4M file (4:2:0, full range) for other encoders.
fn write_y4m(path: &Path, frames: &[Frame]) -> Result<(), BenchError> {
    let info = frames[0].info;
    let failed = |source| BenchError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut w = std::io::BufWriter::new(file);
    let (mut rgb, mut i420) = (Vec::new(), Vec::new());
    writeln!(
        w,
        "YUV4MPEG2 W{} H{} F30:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL",
        info.width, info.height
    )
    .map_err(failed)?;
    for f in frames {
        if !convert::to_i420(f, &mut rgb, &mut i420) {
            return Err(BenchError::Content(format!("{} frames", f.info)));
        }
        w.write_all(b"FRAME\n")
            .and_then(|_| w.write_all(&i420))
            .map_err(failed)?;
    }
    w.flush().map_err(failed)
}

/// What `bench --encode` was asked for.
pub struct EncodeArgs<'a> {
    pub codecs: &'a [String],
    pub contents: &'a [String],
    pub sizes: &'a [(u32, u32)],
    pub frames: usize,
    pub y4m: Option<&'a PathBuf>,
}

/// Measures every codec on every content and size, printing a Markdown table.
pub fn run(
    base: &Config,
    args: &EncodeArgs<'_>,
    stop: &AtomicBool,
) -> Result<Vec<EncodeResult>, BenchError> {
    println!("| codec | content | size | frames | Mbit/s at 30 fps | bits/pixel | Y-PSNR dB | encode CPU ms/frame | encode wall ms/frame | decode ms/frame | keyframes | allocs/encode |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut all = Vec::new();
    for content in args.contents {
        for &size in args.sizes {
            let frames = capture(base, content, size, args.frames.max(1))?;
            if let Some(dir) = args.y4m {
                write_y4m(
                    &dir.join(format!("{content}-{}x{}.y4m", size.0, size.1)),
                    &frames,
                )?;
            }
            for codec in args.codecs {
                if stop.load(Ordering::Relaxed) {
                    return Ok(all);
                }
                let r = measure(base, codec, content, &frames)?;
                println!(
                    "| {} | {} | {}x{} | {} | {:.2} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
                    r.codec,
                    r.content,
                    r.size.0,
                    r.size.1,
                    r.frames,
                    r.mbit_per_s,
                    r.bits_per_pixel,
                    r.psnr_y,
                    r.encode_ms,
                    r.encode_wall_ms,
                    r.decode_ms,
                    r.keyframes,
                    r.encode_allocs
                );
                all.push(r);
            }
        }
    }
    Ok(all)
}
