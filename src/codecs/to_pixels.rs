//! Pictures a source delivered compressed (an MJPEG camera's JPEG, an H.264
//! camera's or recording's access units), turned into pixels for whoever needs
//! pixels: a window, a Y4M file, JPEG for browsers. One decoder per consumer,
//! made once, its buffers reused.

use crate::codecs::jpeg::JpegToPixels;
use crate::error::{BackendError, CodecError};
use crate::media::frame::{Frame, FrameInfo, PixelFormat};

/// A decoder for one stream of compressed pictures.
pub trait ToPixels: Send {
    /// What a frame of `info` becomes.
    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo;

    /// Decodes `compressed` into `out`, reading it where it is.
    ///
    /// Errors: the picture does not decode (untrusted bytes: never a panic).
    /// For an inter-frame format the chain is then broken: give a keyframe next.
    fn decode_into(&mut self, compressed: &Frame, out: &mut Frame) -> Result<(), CodecError>;

    /// Decodes `frame` in place, reusing a buffer of the decoder's own.
    fn decode(&mut self, frame: &mut Frame) -> Result<(), CodecError>;

    /// Each picture may depend on earlier ones: the consumer must give every
    /// frame in order, and after one it missed, a keyframe first.
    fn inter_frame(&self) -> bool {
        false
    }
}

/// The decoder for frames of `format`; `None` when they are pixels already.
///
/// Errors: H.264 frames in a build without the `h264` feature.
pub fn for_format(format: PixelFormat) -> Result<Option<Box<dyn ToPixels>>, BackendError> {
    Ok(match format {
        PixelFormat::Jpeg => Some(Box::new(JpegToPixels::new()?)),
        PixelFormat::H264 => Some(h264()?),
        _ => None,
    })
}

#[cfg(feature = "h264")]
fn h264() -> Result<Box<dyn ToPixels>, BackendError> {
    Ok(Box::<crate::codecs::h264::H264ToPixels>::default())
}

#[cfg(not(feature = "h264"))]
fn h264() -> Result<Box<dyn ToPixels>, BackendError> {
    Err(BackendError::Unsupported {
        backend: "this build",
        what: "decoding H.264 (built without the `h264` feature)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_need_no_decoder_and_compressed_formats_get_theirs() {
        for f in [PixelFormat::Rgb24, PixelFormat::I420, PixelFormat::Yuyv] {
            assert!(for_format(f).unwrap().is_none());
        }
        let jpeg = for_format(PixelFormat::Jpeg).unwrap().unwrap();
        assert!(!jpeg.inter_frame());
        let info = FrameInfo::packed(PixelFormat::Rgb24, 64, 48).unwrap();
        assert_eq!(jpeg.decoded_info(&info).format, PixelFormat::Rgb24);
        let h264 = for_format(PixelFormat::H264);
        #[cfg(feature = "h264")]
        {
            let h264 = h264.unwrap().unwrap();
            assert!(h264.inter_frame());
            assert_eq!(h264.decoded_info(&info).format, PixelFormat::I420);
        }
        #[cfg(not(feature = "h264"))]
        assert!(h264.unwrap_err().to_string().contains("`h264` feature"));
    }
}
