//! What a sink is given of a stream: the one place that decides it, for the
//! viewer's sink and the server's own sinks alike.
//!
//! A sink that stores JPEG or H.264 (`record`) gets such a stream's payload as
//! it came, with no decode and no re-encode. Every other sink gets pixels: what the
//! codec decoded, and, when those are pictures still compressed, decoded once
//! more: JPEG pictures that a codec carried as they were (an MJPEG camera over
//! `raw` or `lz4`) into RGB24 when the sink cannot take JPEG; an H.264
//! camera's access units as the server's own sinks get them, into I420.

use crate::codecs::to_pixels::{self, ToPixels};
use crate::error::BackendError;
use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};

use super::FrameSink;

/// The choice for one sink and one stream, with the decoder it needs.
pub struct SinkInput {
    keeps: Option<PixelFormat>,
    to_pixels: Option<Box<dyn ToPixels>>,
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
        let format = pictures.frame.format;
        let needs_pixels = keeps.is_none() && !(format == PixelFormat::Jpeg && sink.accepts_jpeg());
        let to_pixels = if needs_pixels {
            to_pixels::for_format(format)?
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

    /// The decoder for compressed pictures, when the sink needs them as pixels.
    pub fn to_pixels(&mut self) -> Option<&mut (dyn ToPixels + 'static)> {
        self.to_pixels.as_deref_mut()
    }

    /// The sink needs every frame of an inter-frame stream in order (it keeps
    /// the H.264 as it came, or decodes it): after a frame it missed, nothing
    /// until a keyframe.
    pub fn follows_chain(&self) -> bool {
        self.keeps == Some(PixelFormat::H264)
            || self.to_pixels.as_ref().is_some_and(|p| p.inter_frame())
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
            PixelFormat::Jpeg | PixelFormat::H264 => FrameInfo {
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
            assert!(!w.follows_chain());
        }
        // A recording of H.264 needs the whole chain; of JPEG, any frame.
        let r = SinkInput::choose(&recorder, h264, stream(PixelFormat::H264)).unwrap();
        assert!(r.follows_chain());
        let r = SinkInput::choose(&recorder, jpeg, stream(PixelFormat::Jpeg)).unwrap();
        assert!(!r.follows_chain());
    }

    /// The server's preview window on an H.264 camera: its access units are
    /// decoded, in order.
    #[cfg(feature = "h264")]
    #[test]
    fn a_window_on_an_h264_camera_gets_decoded_pictures_in_chain() {
        let window = Wants {
            keeps: &[],
            accepts_jpeg: true,
        };
        let mut w =
            SinkInput::choose(&window, Some(PixelFormat::H264), stream(PixelFormat::H264)).unwrap();
        assert!(w.keeps().is_none() && w.to_pixels().is_some() && w.follows_chain());
        assert_eq!(w.info().frame.format, PixelFormat::I420);
        assert_eq!((w.info().frame.width, w.info().frame.height), (64, 48));
    }
}
