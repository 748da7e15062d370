//! Choosing a camera's mode: what a node offers (formats, sizes, frame rates),
//! which of it comes nearest to the `[capture]` request, and asking the driver
//! for it (VIDIOC_S_FMT, VIDIOC_S_PARM).
//!
//! A device's answers are untrusted: sizes of zero, ranges upside down, steps of
//! zero and intervals of 0/0 are skipped, never divided by. Used by the thread
//! that opens the camera, and by `livestream devices`.

use std::io;

use v4l::v4l_sys as sys;

use super::device::{fourcc_text, to_format, Node};
use crate::backend::table::CaptureConfig;
use crate::error::BackendError;
use crate::media::frame::PixelFormat;
use crate::sources::camera::nearest_size;
use crate::v4l2::ioctl::{
    zeroed, EnumFmt, EnumFrameIntervals, EnumFrameSizes, GetParm, SetFormat, SetParm,
};

/// Formats in the order a camera's offer is taken when the asked one is missing:
/// cheap to convert first, JPEG (small, but lossy and costly to decode) after them.
pub(super) const PREFERENCE: [PixelFormat; 10] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Uyvy,
    PixelFormat::I420,
    PixelFormat::Jpeg,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Xrgb32,
    PixelFormat::Rgba32,
    PixelFormat::Grey,
];

/// Offered sizes of one format.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Sizes {
    Discrete(Vec<(u32, u32)>),
    /// Any size from min to max in steps (continuous: steps of 1).
    Range {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

impl Sizes {
    fn nearest(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        match self {
            Sizes::Discrete(list) => nearest_size(list, width, height),
            Sizes::Range { min, max, step } => {
                let fit = |v: u32, lo: u32, hi: u32, st: u32| {
                    let v = v.clamp(lo, hi);
                    let st = st.max(1);
                    lo + (v - lo) / st * st
                };
                Some((
                    fit(width, min.0, max.0, step.0),
                    fit(height, min.1, max.1, step.1),
                ))
            }
        }
    }

    /// Sizes to list: every discrete one, or the ends of a range and the common
    /// sizes inside it.
    pub(super) fn listed(&self) -> Vec<(u32, u32)> {
        match self {
            Sizes::Discrete(list) => list.clone(),
            Sizes::Range { min, max, .. } => {
                let mut out = vec![*max];
                for common in [(1920, 1080), (1280, 720), (640, 480)] {
                    if (min.0..=max.0).contains(&common.0)
                        && (min.1..=max.1).contains(&common.1)
                        && !out.contains(&common)
                    {
                        out.push(common);
                    }
                }
                if !out.contains(min) {
                    out.push(*min);
                }
                out
            }
        }
    }
}

impl Node {
    /// Four-character codes of every capture format offered.
    pub(super) fn formats(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for index in 0..256 {
            let mut d: sys::v4l2_fmtdesc = zeroed();
            d.index = index;
            d.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
            if self.ioctl(EnumFmt, &mut d).is_err() {
                break;
            }
            if !out.contains(&d.pixelformat) {
                out.push(d.pixelformat);
            }
        }
        out
    }

    pub(super) fn sizes(&self, code: u32) -> Sizes {
        let mut list = Vec::new();
        for index in 0..256 {
            let mut e: sys::v4l2_frmsizeenum = zeroed();
            e.index = index;
            e.pixel_format = code;
            if self.ioctl(EnumFrameSizes, &mut e).is_err() {
                break;
            }
            if e.type_ == sys::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE {
                // SAFETY: the kernel filled the union member its type names.
                let d = unsafe { e.__bindgen_anon_1.discrete };
                if d.width > 0 && d.height > 0 && !list.contains(&(d.width, d.height)) {
                    list.push((d.width, d.height));
                }
            } else {
                // SAFETY: as above (continuous uses the stepwise member with step 1).
                let s = unsafe { e.__bindgen_anon_1.stepwise };
                if s.min_width > 0
                    && s.min_height > 0
                    && s.max_width >= s.min_width
                    && s.max_height >= s.min_height
                {
                    return Sizes::Range {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step: (s.step_width.max(1), s.step_height.max(1)),
                    };
                }
                break;
            }
        }
        list.sort_by_key(|&(w, h)| std::cmp::Reverse(w as u64 * h as u64));
        Sizes::Discrete(list)
    }

    /// Frame rates offered at one size, highest first (a range gives its ends).
    pub(super) fn rates(&self, code: u32, width: u32, height: u32) -> Vec<f64> {
        let fps = |f: sys::v4l2_fract| {
            (f.numerator > 0 && f.denominator > 0)
                .then(|| f.denominator as f64 / f.numerator as f64)
        };
        let mut out = Vec::new();
        for index in 0..256 {
            let mut e: sys::v4l2_frmivalenum = zeroed();
            e.index = index;
            e.pixel_format = code;
            e.width = width;
            e.height = height;
            if self.ioctl(EnumFrameIntervals, &mut e).is_err() {
                break;
            }
            if e.type_ == sys::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE {
                // SAFETY: the kernel filled the member its type names.
                out.extend(fps(unsafe { e.__bindgen_anon_1.discrete }));
            } else {
                // SAFETY: as above (continuous and stepwise both use `stepwise`).
                let s = unsafe { e.__bindgen_anon_1.stepwise };
                out.extend(fps(s.min));
                out.extend(fps(s.max));
                break;
            }
        }
        out.sort_by(|a, b| b.total_cmp(a));
        out.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
        out
    }

    /// Asks for a format and size; returns what the driver took instead.
    pub(super) fn set_format(
        &self,
        code: u32,
        width: u32,
        height: u32,
    ) -> io::Result<sys::v4l2_pix_format> {
        let mut f: sys::v4l2_format = zeroed();
        f.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        f.fmt.pix = sys::v4l2_pix_format {
            pixelformat: code,
            width,
            height,
            field: sys::v4l2_field_V4L2_FIELD_NONE,
            ..zeroed()
        };
        self.ioctl(SetFormat, &mut f)?;
        // SAFETY: VIDEO_CAPTURE formats live in the `pix` member.
        Ok(unsafe { f.fmt.pix })
    }

    /// Asks for `fps` (0: the fastest) and returns the rate the driver chose, or
    /// `None` when the device has no frame rate setting.
    pub(super) fn set_rate(&self, fps: f64) -> Option<f64> {
        let mut p: sys::v4l2_streamparm = zeroed();
        p.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        self.ioctl(GetParm, &mut p).ok()?;
        // SAFETY: the capture member, the one VIDEO_CAPTURE uses.
        let cap = unsafe { &mut p.parm.capture };
        if cap.capability & sys::V4L2_CAP_TIMEPERFRAME == 0 {
            return None;
        }
        cap.timeperframe = if fps > 0.0 {
            sys::v4l2_fract {
                numerator: 1000,
                denominator: (fps * 1000.0).round().clamp(1.0, u32::MAX as f64) as u32,
            }
        } else {
            // The shortest interval there is: the driver clamps it to its fastest.
            sys::v4l2_fract {
                numerator: 1,
                denominator: 1000,
            }
        };
        self.ioctl(SetParm, &mut p).ok()?;
        // SAFETY: as above.
        let t = unsafe { p.parm.capture.timeperframe };
        (t.numerator > 0 && t.denominator > 0).then(|| t.denominator as f64 / t.numerator as f64)
    }
}

/// The mode to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Choice {
    pub(super) code: u32,
    pub(super) format: PixelFormat,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// Picks format and size. With a `required` format: that one, at its nearest
/// size. Otherwise the format and size nearest to `cap`, preferring a mode that
/// reaches the asked frame rate, then the asked format, then [`PREFERENCE`].
pub(super) fn choose(
    node: &Node,
    required: Option<PixelFormat>,
    cap: &CaptureConfig,
) -> Result<Choice, BackendError> {
    let offered: Vec<(u32, PixelFormat)> = node
        .formats()
        .into_iter()
        .filter_map(|c| Some((c, to_format(c)?)))
        .collect();
    let offered_names = || {
        let mut all: Vec<String> = node.formats().into_iter().map(fourcc_text).collect();
        all.dedup();
        all.join(", ")
    };
    if offered.is_empty() {
        return Err(BackendError::Unsupported {
            backend: "v4l2",
            what: format!(
                "any format {} offers ({}); livestream takes: {}",
                node.card,
                offered_names(),
                PREFERENCE
                    .map(|f| f.fourcc().map(char::from).iter().collect::<String>())
                    .join(", ")
            ),
        });
    }
    let candidates: Vec<(u32, PixelFormat)> = match required {
        Some(f) => {
            let found: Vec<_> = offered.iter().copied().filter(|&(_, o)| o == f).collect();
            if found.is_empty() {
                return Err(BackendError::Unsupported {
                    backend: "v4l2",
                    what: format!("{f} on {} (it offers {})", node.card, offered_names()),
                });
            }
            found
        }
        None => offered,
    };
    let want_area = (cap.width as f64 * cap.height as f64).max(1.0);
    let mut best: Option<((u64, u8, usize), Choice)> = None;
    for (code, format) in candidates {
        let Some((width, height)) = node.sizes(code).nearest(cap.width, cap.height) else {
            continue;
        };
        let size_cost = ((width as f64 * height as f64 / want_area).ln().abs() * 1000.0) as u64;
        let fastest = node.rates(code, width, height).first().copied();
        let too_slow = u8::from(cap.fps > 0.0 && fastest.is_some_and(|f| f + 0.01 < cap.fps));
        let rank = if format == cap.format {
            0
        } else {
            1 + PREFERENCE.iter().position(|&p| p == format).unwrap_or(99)
        };
        let key = (size_cost, too_slow, rank);
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((
                key,
                Choice {
                    code,
                    format,
                    width,
                    height,
                },
            ));
        }
    }
    best.map(|(_, c)| c)
        .ok_or_else(|| BackendError::Unsupported {
            backend: "v4l2",
            what: format!("any frame size of {} (it lists none)", node.card),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_a_range_snap_to_the_steps() {
        let r = Sizes::Range {
            min: (16, 16),
            max: (1920, 1080),
            step: (16, 8),
        };
        assert_eq!(r.nearest(1000, 700), Some((992, 696)));
        assert_eq!(r.nearest(4000, 4000), Some((1920, 1080)));
        assert_eq!(r.nearest(1, 1), Some((16, 16)));
        assert!(r.listed().contains(&(1280, 720)));
        // A step of zero from a confused driver does not divide by zero.
        let z = Sizes::Range {
            min: (2, 2),
            max: (64, 64),
            step: (0, 0),
        };
        assert_eq!(z.nearest(33, 31), Some((33, 31)));
    }
}
