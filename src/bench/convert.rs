//! `livestream bench --convert`: what one frame's pixel conversion costs, the plain
//! loops of [`convert::reference`] against [`convert`] (yuvutils-rs), for every
//! uncompressed format, on a `synthetic-camera` frame (a photo with sensor noise).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{BenchError, ALLOCATIONS};
use crate::backend::Kind;
use crate::config::{Config, Overrides};
use crate::media::convert::{self, reference};
use crate::media::frame::{Frame, PixelFormat};
use crate::registry;

/// One conversion measured both ways.
#[derive(Debug, Clone)]
pub struct ConvertResult {
    pub size: (u32, u32),
    pub format: PixelFormat,
    pub conversion: &'static str,
    /// Median milliseconds per frame.
    pub plain_ms: f64,
    pub fast_ms: f64,
    /// Heap allocations per call of the fast path, buffers already grown.
    pub fast_allocs: f64,
}

/// Buffers both paths write into, reused from call to call as the pipeline does.
struct Buffers {
    frame: Frame,
    bytes: Vec<u8>,
    pixels: Vec<u32>,
}

/// The conversions of the public API, each as (name, plain, fast) on a source
/// frame and the same frame's RGB24.
type Run = fn(&Frame, &[u8], &mut Buffers);

const CONVERSIONS: [(&str, Run, Run); 4] = [
    (
        "to_rgb24",
        |f, _, b| {
            reference::to_rgb24(f, &mut b.bytes);
        },
        |f, _, b| {
            convert::to_rgb24(f, &mut b.bytes);
        },
    ),
    (
        "to_xrgb_u32",
        |f, _, b| {
            reference::to_xrgb_u32(f, &mut b.bytes, &mut b.pixels);
        },
        |f, _, b| {
            convert::to_xrgb_u32(f, &mut b.bytes, &mut b.pixels);
        },
    ),
    (
        "from_rgb24",
        |f, rgb, b| {
            let i = f.info;
            reference::from_rgb24(rgb, i.width, i.height, i.format, &mut b.frame);
        },
        |f, rgb, b| {
            let i = f.info;
            convert::from_rgb24(rgb, i.width, i.height, i.format, &mut b.frame);
        },
    ),
    (
        "to_planar",
        |f, _, b| {
            reference::to_planar(f, &mut b.bytes);
        },
        |f, _, b| {
            convert::to_planar(f, &mut b.bytes);
        },
    ),
];

/// One `synthetic-camera` frame in RGB24 at `size`, as `serve` would capture it.
pub(crate) fn photo(base: &Config, (width, height): (u32, u32)) -> Result<Frame, BenchError> {
    let name = "synthetic-camera";
    let overrides = Overrides {
        source: Some(name.into()),
        width: Some(width),
        height: Some(height),
        fps: Some(0.0),
        format: Some("rgb24".into()),
        ..Default::default()
    };
    let cfg = Config::parse(base.text.clone(), &overrides)?;
    let backend = registry::source(name)?;
    let mut source = (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, name))?;
    let mut frame = Frame::empty();
    source.next_frame(&mut frame)?;
    Ok(frame)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `plain` and `fast` alternately, `runs` times each after a warm-up that
/// grows the buffers, and counts the fast path's allocations.
fn measure(src: &Frame, rgb: &[u8], (plain, fast): (Run, Run), runs: usize) -> (f64, f64, f64) {
    let mut buffers = Buffers {
        frame: Frame::empty(),
        bytes: Vec::new(),
        pixels: Vec::new(),
    };
    for _ in 0..2 {
        plain(src, rgb, &mut buffers);
        fast(src, rgb, &mut buffers);
    }
    let time = |run: Run, buffers: &mut Buffers| {
        let t = Instant::now();
        run(src, rgb, buffers);
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut plain_ms, mut fast_ms, mut allocs) =
        (Vec::with_capacity(runs), Vec::with_capacity(runs), 0);
    for _ in 0..runs {
        plain_ms.push(time(plain, &mut buffers));
        let a0 = ALLOCATIONS.load(Ordering::Relaxed);
        let ms = time(fast, &mut buffers);
        allocs += ALLOCATIONS.load(Ordering::Relaxed) - a0;
        fast_ms.push(ms);
    }
    (
        median(plain_ms),
        median(fast_ms),
        allocs as f64 / runs as f64,
    )
}

/// Measures every conversion of every uncompressed format at every size and prints
/// a Markdown table, a row as soon as it is measured.
pub fn run(
    base: &Config,
    sizes: &[(u32, u32)],
    runs: usize,
    stop: &AtomicBool,
) -> Result<Vec<ConvertResult>, BenchError> {
    println!(
        "| size | format | conversion | plain loop ms | convert ms | speed-up | allocs/call |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for &size in sizes {
        let rgb = photo(base, size)?;
        let formats = PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed());
        for format in formats {
            let mut src = Frame::empty();
            reference::from_rgb24(&rgb.data, size.0, size.1, format, &mut src);
            for (conversion, plain, fast) in CONVERSIONS {
                // RGB24 to or from itself is a copy both ways.
                if format == PixelFormat::Rgb24 && conversion.ends_with("rgb24") {
                    continue;
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(results);
                }
                let (plain_ms, fast_ms, fast_allocs) =
                    measure(&src, &rgb.data, (plain, fast), runs.max(1));
                println!(
                    "| {}x{} | {format} | {conversion} | {plain_ms:.2} | {fast_ms:.2} | {:.1}x | {fast_allocs:.2} |",
                    size.0,
                    size.1,
                    plain_ms / fast_ms
                );
                results.push(ConvertResult {
                    size,
                    format,
                    conversion,
                    plain_ms,
                    fast_ms,
                    fast_allocs,
                });
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::table::ConfigText;

    #[test]
    fn measures_every_conversion_of_every_format() {
        let cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        let results = run(&cfg, &[(64, 48)], 1, &AtomicBool::new(false)).unwrap();
        // 9 uncompressed formats x 4 conversions, less RGB24 to and from itself.
        assert_eq!(results.len(), 9 * 4 - 2);
        for r in &results {
            assert!(
                r.plain_ms > 0.0 && r.fast_ms > 0.0,
                "{} {}: {r:?}",
                r.format,
                r.conversion
            );
        }
        let stopped = run(&cfg, &[(64, 48)], 1, &AtomicBool::new(true)).unwrap();
        assert!(stopped.is_empty(), "a stop request ends the run");
    }
}
