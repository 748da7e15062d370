//! Frames, pixel formats and the limits that every untrusted size is checked against.

use std::fmt;

/// How the pixels of a frame are laid out in memory.
///
/// Every format except [`PixelFormat::Jpeg`] has a size fixed by width, height and
/// stride; see [`FrameInfo::byte_len`]. The 4:2:2 formats need an even width and
/// the 4:2:0 formats an even width and height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 3 bytes per pixel: R, G, B.
    Rgb24,
    /// 3 bytes per pixel: B, G, R.
    Bgr24,
    /// 4 bytes per pixel, the 32-bit little-endian word 0xXXRRGGBB: B, G, R, X in
    /// memory (DRM XRGB8888, V4L2 `XR24`; what minifb and most X11 windows take).
    Xrgb32,
    /// 4 bytes per pixel: R, G, B, A.
    Rgba32,
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Packed 4:2:2, U Y0 V Y1.
    Uyvy,
    /// Y plane, then one plane of interleaved U, V at half width and height.
    Nv12,
    /// Y plane, then U plane, then V plane, chroma at half width and height.
    I420,
    /// 8-bit luma only.
    Grey,
    /// A complete JPEG image (baseline, as delivered by MJPEG cameras).
    Jpeg,
    /// One H.264 access unit in Annex-B form (NAL units behind start codes), as
    /// a camera's H.264 mode or a recording of an H.264 stream delivers it.
    H264,
}

impl PixelFormat {
    /// Every format, in the order `livestream` lists them.
    pub const ALL: [PixelFormat; 11] = [
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Xrgb32,
        PixelFormat::Rgba32,
        PixelFormat::Yuyv,
        PixelFormat::Uyvy,
        PixelFormat::Nv12,
        PixelFormat::I420,
        PixelFormat::Grey,
        PixelFormat::Jpeg,
        PixelFormat::H264,
    ];

    /// The name used in `livestream.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Xrgb32 => "xrgb32",
            PixelFormat::Rgba32 => "rgba32",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Uyvy => "uyvy",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::I420 => "i420",
            PixelFormat::Grey => "grey",
            PixelFormat::Jpeg => "jpeg",
            PixelFormat::H264 => "h264",
        }
    }

    pub fn from_name(name: &str) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The V4L2 four-character code, which is also the wire identifier.
    pub fn fourcc(self) -> [u8; 4] {
        *match self {
            PixelFormat::Rgb24 => b"RGB3",
            PixelFormat::Bgr24 => b"BGR3",
            PixelFormat::Xrgb32 => b"XR24",
            PixelFormat::Rgba32 => b"AB24",
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Uyvy => b"UYVY",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::I420 => b"YU12",
            PixelFormat::Grey => b"GREY",
            PixelFormat::Jpeg => b"MJPG",
            PixelFormat::H264 => b"H264",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == code)
    }

    /// Bytes per row of the first plane for a tightly packed frame, or `None` when the
    /// width does not fit the format (odd width for a 4:2:x format) or overflows.
    pub fn min_stride(self, width: u32) -> Option<u32> {
        let per_pixel = match self {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => 3,
            PixelFormat::Xrgb32 | PixelFormat::Rgba32 => 4,
            PixelFormat::Yuyv | PixelFormat::Uyvy => 2,
            PixelFormat::Nv12 | PixelFormat::I420 | PixelFormat::Grey => 1,
            PixelFormat::Jpeg | PixelFormat::H264 => return Some(0),
        };
        width.checked_mul(per_pixel)
    }

    fn needs_even_width(self) -> bool {
        matches!(
            self,
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Nv12 | PixelFormat::I420
        )
    }

    fn needs_even_height(self) -> bool {
        matches!(self, PixelFormat::Nv12 | PixelFormat::I420)
    }

    /// A whole compressed picture (JPEG) or access unit (H.264) per frame, of
    /// varying size, rather than pixels.
    pub fn is_compressed(self) -> bool {
        matches!(self, PixelFormat::Jpeg | PixelFormat::H264)
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds on sizes that come from outside: the network, a file, a device, a user.
///
/// Every size is checked against these before a byte is allocated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    /// Largest frame (decoded) or payload (encoded), in bytes.
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 8192x8192 covers every camera on the market; 128 MiB covers 8K RGBA.
        Limits {
            max_width: 8192,
            max_height: 8192,
            max_frame_bytes: 128 << 20,
        }
    }
}

/// Why a frame geometry was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("size {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("size {width}x{height} is over the limit of {max_width}x{max_height}")]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("{format} needs an even width and height (got {width}x{height})")]
    OddSize {
        format: PixelFormat,
        width: u32,
        height: u32,
    },
    #[error("stride {stride} is below the {min} bytes a row of {format} at width {width} needs")]
    StrideTooSmall {
        format: PixelFormat,
        width: u32,
        stride: u32,
        min: u32,
    },
    #[error("{format} stride must be even (got {stride})")]
    OddStride { format: PixelFormat, stride: u32 },
    #[error("a {width}x{height} {format} frame needs more than the limit of {max} bytes")]
    TooManyBytes {
        format: PixelFormat,
        width: u32,
        height: u32,
        max: usize,
    },
}

/// The geometry of a frame: everything needed to interpret its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row of the first plane. For I420 the chroma planes use `stride / 2`,
    /// for NV12 the chroma plane uses `stride`. Zero for JPEG.
    pub stride: u32,
}

impl FrameInfo {
    /// A tightly packed frame (`stride` = the minimum).
    pub fn packed(
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> Result<FrameInfo, GeometryError> {
        let stride = format.min_stride(width).ok_or(GeometryError::TooLarge {
            width,
            height,
            max_width: u32::MAX,
            max_height: u32::MAX,
        })?;
        let info = FrameInfo {
            format,
            width,
            height,
            stride,
        };
        info.validate(&Limits {
            max_width: u32::MAX,
            max_height: u32::MAX,
            max_frame_bytes: usize::MAX,
        })?;
        Ok(info)
    }

    /// Checks the geometry against `limits` and returns the byte length of a frame
    /// (for JPEG: the largest a frame of this size may be).
    ///
    /// ```
    /// use livestream::media::frame::{FrameInfo, Limits, PixelFormat};
    ///
    /// let nv12 = FrameInfo { format: PixelFormat::Nv12, width: 640, height: 480, stride: 640 };
    /// assert_eq!(nv12.validate(&Limits::default()), Ok(640 * 480 * 3 / 2));
    /// // Sizes from the network are checked before anything is allocated for them.
    /// let hostile = FrameInfo { width: u32::MAX, ..nv12 };
    /// assert!(hostile.validate(&Limits::default()).is_err());
    /// ```
    pub fn validate(&self, limits: &Limits) -> Result<usize, GeometryError> {
        let FrameInfo {
            format,
            width,
            height,
            stride,
        } = *self;
        if width == 0 || height == 0 {
            return Err(GeometryError::Empty { width, height });
        }
        if width > limits.max_width || height > limits.max_height {
            return Err(GeometryError::TooLarge {
                width,
                height,
                max_width: limits.max_width,
                max_height: limits.max_height,
            });
        }
        if (format.needs_even_width() && width % 2 != 0)
            || (format.needs_even_height() && height % 2 != 0)
        {
            return Err(GeometryError::OddSize {
                format,
                width,
                height,
            });
        }
        let too_many = GeometryError::TooManyBytes {
            format,
            width,
            height,
            max: limits.max_frame_bytes,
        };
        let len = if format.is_compressed() {
            // A baseline JPEG or an H.264 access unit is far smaller than this in
            // practice; the bound keeps a hostile peer from announcing an
            // unbounded payload.
            (width as usize)
                .checked_mul(height as usize)
                .and_then(|n| n.checked_mul(3))
                .and_then(|n| n.checked_add(1 << 16))
                .ok_or(too_many)?
                .min(limits.max_frame_bytes)
        } else {
            let min = format.min_stride(width).ok_or(too_many)?;
            if stride < min {
                return Err(GeometryError::StrideTooSmall {
                    format,
                    width,
                    stride,
                    min,
                });
            }
            if format == PixelFormat::I420 && stride % 2 != 0 {
                return Err(GeometryError::OddStride { format, stride });
            }
            let luma = (stride as usize)
                .checked_mul(height as usize)
                .ok_or(too_many)?;
            match format {
                PixelFormat::Nv12 | PixelFormat::I420 => luma.checked_add(luma / 2),
                _ => Some(luma),
            }
            .ok_or(too_many)?
        };
        if len > limits.max_frame_bytes {
            return Err(too_many);
        }
        Ok(len)
    }

    /// Byte length of a frame with this geometry; only for geometries already validated.
    pub fn byte_len(&self) -> usize {
        self.validate(&Limits {
            max_width: u32::MAX,
            max_height: u32::MAX,
            max_frame_bytes: usize::MAX,
        })
        .unwrap_or(0)
    }
}

impl fmt::Display for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} {}", self.width, self.height, self.format)
    }
}

/// One picture with its metadata. The buffer is owned by whoever calls the stage
/// that fills it, and reused from frame to frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub info: FrameInfo,
    /// Counts up by one per captured frame, from 0, on the server.
    pub seq: u64,
    /// Capture time on the server's monotonic clock, in microseconds (see [`crate::media::clock`]).
    pub capture_us: u64,
    /// The pixels: exactly `info.byte_len()` bytes, or a whole JPEG image.
    pub data: Vec<u8>,
}

impl Frame {
    /// An empty frame with no buffer yet: the first stage that fills it sizes it.
    pub fn empty() -> Frame {
        Frame {
            info: FrameInfo {
                format: PixelFormat::Rgb24,
                width: 0,
                height: 0,
                stride: 0,
            },
            seq: 0,
            capture_us: 0,
            data: Vec::new(),
        }
    }

    /// Sets the geometry and makes `data` exactly `info.byte_len()` bytes long,
    /// reusing the buffer (no allocation once it is big enough). New bytes are zero.
    pub fn reset(&mut self, info: FrameInfo) {
        self.info = info;
        self.data.resize(info.byte_len(), 0);
    }
}

/// The description of a stream: what every frame of it looks like, and how often.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamInfo {
    pub frame: FrameInfo,
    /// Nominal frames per second; 0 when unpaced or unknown.
    pub fps: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_every_format() {
        let cases = [
            (PixelFormat::Rgb24, 640 * 480 * 3),
            (PixelFormat::Bgr24, 640 * 480 * 3),
            (PixelFormat::Xrgb32, 640 * 480 * 4),
            (PixelFormat::Rgba32, 640 * 480 * 4),
            (PixelFormat::Yuyv, 640 * 480 * 2),
            (PixelFormat::Uyvy, 640 * 480 * 2),
            (PixelFormat::Nv12, 640 * 480 * 3 / 2),
            (PixelFormat::I420, 640 * 480 * 3 / 2),
            (PixelFormat::Grey, 640 * 480),
        ];
        for (format, len) in cases {
            let info = FrameInfo::packed(format, 640, 480).unwrap();
            assert_eq!(info.byte_len(), len, "{format}");
        }
    }

    #[test]
    fn fourcc_and_names_round_trip() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            assert_eq!(PixelFormat::from_name(f.name()), Some(f));
        }
        assert_eq!(PixelFormat::from_fourcc(*b"ABCD"), None);
    }

    #[test]
    fn rejects_bad_geometry() {
        let limits = Limits::default();
        let info = |format, width, height, stride| FrameInfo {
            format,
            width,
            height,
            stride,
        };
        assert!(matches!(
            info(PixelFormat::Rgb24, 0, 10, 0).validate(&limits),
            Err(GeometryError::Empty { .. })
        ));
        assert!(matches!(
            info(PixelFormat::Rgb24, 9000, 10, 27000).validate(&limits),
            Err(GeometryError::TooLarge { .. })
        ));
        assert!(matches!(
            info(PixelFormat::Nv12, 640, 479, 640).validate(&limits),
            Err(GeometryError::OddSize { .. })
        ));
        assert!(matches!(
            info(PixelFormat::Yuyv, 641, 480, 1282).validate(&limits),
            Err(GeometryError::OddSize { .. })
        ));
        assert!(matches!(
            info(PixelFormat::Rgb24, 640, 480, 100).validate(&limits),
            Err(GeometryError::StrideTooSmall { .. })
        ));
        assert!(matches!(
            info(PixelFormat::I420, 640, 480, 641).validate(&limits),
            Err(GeometryError::OddStride { .. })
        ));
        let small = Limits {
            max_frame_bytes: 1000,
            ..limits
        };
        assert!(matches!(
            info(PixelFormat::Rgb24, 640, 480, 1920).validate(&small),
            Err(GeometryError::TooManyBytes { .. })
        ));
        // Stride larger than needed is fine and counts.
        assert_eq!(
            info(PixelFormat::Grey, 10, 10, 16).validate(&limits),
            Ok(160)
        );
    }
}
