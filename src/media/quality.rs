//! How close a decoded picture is to its source: the peak signal-to-noise
//! ratio of two planes, and of two frames' luma. Used by the lossy codecs'
//! tests, the end-to-end tests and `livestream bench --encode`.

use super::convert;
use super::frame::Frame;

/// Peak signal-to-noise ratio of two planes of 8-bit samples, in dB (over the
/// shorter length; identical planes give a large finite number, not infinity).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as i64 - y as i64;
            (d * d) as u64
        })
        .sum();
    let mse = sum as f64 / n as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

/// The luma plane of an uncompressed frame of even size (as I420's Y) into
/// `out`; `rgb` is scratch. `false` for JPEG and odd sizes.
pub fn luma(frame: &Frame, rgb: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    let ok = convert::to_i420(frame, rgb, out);
    out.truncate((frame.info.width * frame.info.height) as usize);
    ok
}

/// Y-PSNR of two frames of the same even size, in dB; `None` when either has
/// no luma to compare.
pub fn psnr_y(a: &Frame, b: &Frame) -> Option<f64> {
    let (mut rgb, mut ya, mut yb) = (Vec::new(), Vec::new(), Vec::new());
    (luma(a, &mut rgb, &mut ya) && luma(b, &mut rgb, &mut yb)).then(|| psnr(&ya, &yb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_level_off_everywhere_is_48_db() {
        let a = vec![100u8; 64];
        let b = vec![101u8; 64];
        assert!((psnr(&a, &b) - 48.13).abs() < 0.01, "{}", psnr(&a, &b));
        assert!(psnr(&a, &a) > 90.0);
    }
}
