//! What a sink is given of a stream: the one place that decides it, for the
//! viewer's sink and the server's own sinks alike.
//!
//! A sink that stores JPEG or H.264 (`record`) gets such a stream's payload as
//! it came, with no decode and no re-encode. Every other sink gets pixels: what the
//! codec decoded, and, when those are JPEG pictures that a codec carried as
//! they were (an MJPEG camera over `raw` or `lz4`) and the sink cannot take
//! JPEG, those pictures decoded once more into RGB24.

use crate::codecs::jpeg::JpegToPixels;
use crate::error::BackendError;
use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};

use super::FrameSink;

/// The choice for one sink and one stream, with the decoder it needs.
pub struct SinkInput {
    keeps: Option<PixelFormat>,
    to_pixels: Option<JpegToPixels>,
    info: StreamInfo,
}

impl SinkInput {
    /// `payload`: the format of the codec's payload when each is a whole
    /// picture in a standard format (JPEG, an H.264 access unit).
    /// `pictures`: the frames as the codec decodes them (on the server: as
    /// captured).
    pub fn choose(
        sink: &dyn FrameSink,
        payload: Option<PixelFormat>,
        pictures: StreamInfo,
    ) -> Result<SinkInput, BackendError> {
        let keeps = payload.filter(|&f| sink.keeps(f));
        let needs_pixels =
            keeps.is_none() && pictures.frame.format == PixelFormat::Jpeg && !sink.accepts_jpeg();
        let to_pixels = if needs_pixels {
            Some(JpegToPixels::new()?)
        } else {
            None
        };
        let frame = match &to_pixels {
            _ if keeps.is_some() => FrameInfo {
                format: keeps.unwrap_or(PixelFormat::Jpeg),
                stride: 0,
                ..pictures.frame
            },
            Some(p) => p.decoded_info(&pictures.frame),
            None => pictures.frame,
        };
        Ok(SinkInput {
            keeps,
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

    /// The sink gets the payload as it came, in this format.
    pub fn keeps(&self) -> Option<PixelFormat> {
        self.keeps
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
        keeps: &'static [PixelFormat],
        accepts_jpeg: bool,
    }

    impl FrameSink for Wants {
        fn start(&mut self, _: &StreamMeta) -> Result<(), SinkError> {
            Ok(())
        }
        fn present(&mut self, _: &Frame, _: &Live) -> Result<Flow, SinkError> {
            Ok(Flow::Continue)
        }
        fn keeps(&self, format: PixelFormat) -> bool {
            self.keeps.contains(&format)
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
            keeps: &[PixelFormat::Jpeg, PixelFormat::H264],
            accepts_jpeg: true,
        };
        let window = Wants {
            keeps: &[],
            accepts_jpeg: false,
        };
        let (jpeg, h264) = (Some(PixelFormat::Jpeg), Some(PixelFormat::H264));
        // A JPEG stream, recorded: the payload as it came.
        let mut r = SinkInput::choose(&recorder, jpeg, stream(PixelFormat::Rgb24)).unwrap();
        assert!(r.keeps() == jpeg && r.to_pixels().is_none());
        assert_eq!(r.info().frame.format, PixelFormat::Jpeg);
        // An H.264 stream, recorded: its access units as they came.
        let mut r = SinkInput::choose(&recorder, h264, stream(PixelFormat::I420)).unwrap();
        assert!(r.keeps() == h264 && r.to_pixels().is_none());
        assert_eq!(r.info().frame.format, PixelFormat::H264);
        assert_eq!((r.info().frame.width, r.info().frame.height), (64, 48));
        // A raw stream, recorded: pixels (the recorder encodes them itself).
        let r = SinkInput::choose(&recorder, None, stream(PixelFormat::Rgb24)).unwrap();
        assert_eq!(r.keeps(), None);
        assert_eq!(r.info().frame.format, PixelFormat::Rgb24);
        // An MJPEG camera over a codec that keeps its pictures: decoded for a window.
        let mut w = SinkInput::choose(&window, None, stream(PixelFormat::Jpeg)).unwrap();
        assert!(w.keeps().is_none() && w.to_pixels().is_some());
        assert_eq!(w.info().frame.format, PixelFormat::Rgb24);
        assert_eq!((w.info().frame.width, w.info().frame.height), (64, 48));
        // Pixels for a window: as decoded.
        for payload in [jpeg, h264] {
            let mut w = SinkInput::choose(&window, payload, stream(PixelFormat::Yuyv)).unwrap();
            assert!(w.keeps().is_none() && w.to_pixels().is_none());
            assert_eq!(w.info().frame.format, PixelFormat::Yuyv);
        }
    }
}
