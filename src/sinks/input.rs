//! What a sink is given of a stream: the one place that decides it, for the
//! viewer's sink and the server's own sinks alike.
//!
//! A sink that stores JPEG (`record`) gets a JPEG stream's payload as it came,
//! with no decode and no re-encode. Every other sink gets pixels: what the
//! codec decoded, and, when those are JPEG pictures that a codec carried as
//! they were (an MJPEG camera over `raw` or `lz4`) and the sink cannot take
//! JPEG, those pictures decoded once more into RGB24.

use crate::codecs::jpeg::JpegToPixels;
use crate::error::BackendError;
use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};

use super::FrameSink;

/// The choice for one sink and one stream, with the decoder it needs.
pub struct SinkInput {
    keeps_jpeg: bool,
    to_pixels: Option<JpegToPixels>,
    info: StreamInfo,
}

impl SinkInput {
    /// `payload_is_jpeg`: the codec's payload is a whole JPEG picture.
    /// `pictures`: the frames as the codec decodes them (on the server: as
    /// captured).
    pub fn choose(
        sink: &dyn FrameSink,
        payload_is_jpeg: bool,
        pictures: StreamInfo,
    ) -> Result<SinkInput, BackendError> {
        let keeps_jpeg = sink.takes_jpeg() && payload_is_jpeg;
        let needs_pixels =
            !keeps_jpeg && pictures.frame.format == PixelFormat::Jpeg && !sink.accepts_jpeg();
        let to_pixels = if needs_pixels {
            Some(JpegToPixels::new()?)
        } else {
            None
        };
        let frame = match &to_pixels {
            _ if keeps_jpeg => FrameInfo {
                format: PixelFormat::Jpeg,
                stride: 0,
                ..pictures.frame
            },
            Some(p) => p.decoded_info(&pictures.frame),
            None => pictures.frame,
        };
        Ok(SinkInput {
            keeps_jpeg,
            to_pixels,
            info: StreamInfo {
                frame,
                fps: pictures.fps,
            },
        })
    }

    /// What the sink is started with ([`FrameSink::start`]).
    pub fn info(&self) -> StreamInfo {
        self.info
    }

    /// The sink gets the payload as it came.
    pub fn keeps_jpeg(&self) -> bool {
        self.keeps_jpeg
    }

    /// The decoder for JPEG pictures, when the sink needs them as pixels.
    pub fn to_pixels(&mut self) -> Option<&mut JpegToPixels> {
        self.to_pixels.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SinkError;
    use crate::media::frame::Frame;
    use crate::sinks::{Flow, Live, StreamMeta};

    struct Wants {
        takes_jpeg: bool,
        accepts_jpeg: bool,
    }

    impl FrameSink for Wants {
        fn start(&mut self, _: &StreamMeta) -> Result<(), SinkError> {
            Ok(())
        }
        fn present(&mut self, _: &Frame, _: &Live) -> Result<Flow, SinkError> {
            Ok(Flow::Continue)
        }
        fn takes_jpeg(&self) -> bool {
            self.takes_jpeg
        }
        fn accepts_jpeg(&self) -> bool {
            self.accepts_jpeg
        }
        fn finish(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn stream(format: PixelFormat) -> StreamInfo {
        let frame = match format {
            PixelFormat::Jpeg => FrameInfo {
                format,
                ..FrameInfo::packed(PixelFormat::Rgb24, 64, 48).unwrap()
            },
            f => FrameInfo::packed(f, 64, 48).unwrap(),
        };
        StreamInfo { frame, fps: 30.0 }
    }

    #[test]
    fn each_sink_gets_what_it_can_take() {
        let recorder = Wants {
            takes_jpeg: true,
            accepts_jpeg: true,
        };
        let window = Wants {
            takes_jpeg: false,
            accepts_jpeg: false,
        };
        // A JPEG stream, recorded: the payload as it came.
        let mut r = SinkInput::choose(&recorder, true, stream(PixelFormat::Rgb24)).unwrap();
        assert!(r.keeps_jpeg() && r.to_pixels().is_none());
        assert_eq!(r.info().frame.format, PixelFormat::Jpeg);
        // A raw stream, recorded: pixels (the recorder encodes them itself).
        let r = SinkInput::choose(&recorder, false, stream(PixelFormat::Rgb24)).unwrap();
        assert!(!r.keeps_jpeg());
        assert_eq!(r.info().frame.format, PixelFormat::Rgb24);
        // An MJPEG camera over a codec that keeps its pictures: decoded for a window.
        let mut w = SinkInput::choose(&window, false, stream(PixelFormat::Jpeg)).unwrap();
        assert!(!w.keeps_jpeg() && w.to_pixels().is_some());
        assert_eq!(w.info().frame.format, PixelFormat::Rgb24);
        assert_eq!((w.info().frame.width, w.info().frame.height), (64, 48));
        // Pixels for a window: as decoded.
        let mut w = SinkInput::choose(&window, true, stream(PixelFormat::Yuyv)).unwrap();
        assert!(!w.keeps_jpeg() && w.to_pixels().is_none());
        assert_eq!(w.info().frame.format, PixelFormat::Yuyv);
    }
}
