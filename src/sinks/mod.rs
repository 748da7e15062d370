//! Frame sinks: where decoded pictures go.

use crate::backend::table::BackendConfig;
use crate::backend::Availability;
use crate::error::{BackendError, SinkError};
use crate::media::frame::{Frame, PixelFormat, StreamInfo};

pub mod file;
pub mod input;
#[cfg(feature = "minifb")]
pub mod minifb;
pub mod null;
#[cfg(any(feature = "minifb", feature = "sdl2", feature = "x11"))]
mod overlay;
pub mod record;
#[cfg(feature = "sdl2")]
pub mod sdl2;
#[cfg(feature = "x11")]
pub mod x11;

// Window sinks a build can leave out say how to get them back.
#[cfg(not(feature = "minifb"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Sink,
        name: "minifb",
        feature: "minifb",
        package: "no package",
    }
}
#[cfg(not(feature = "x11"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Sink,
        name: "x11",
        feature: "x11",
        package: "no package",
    }
}
#[cfg(not(feature = "sdl2"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Sink,
        name: "sdl2",
        feature: "sdl2",
        package: "libsdl2-dev",
    }
}
pub mod window;

/// Whether the sink wants more frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The user is done (closed the window): a normal end, not an error.
    Stop,
}

/// What a sink is told about the stream it shows.
#[derive(Clone, Debug)]
pub struct StreamMeta {
    pub info: StreamInfo,
    /// The server's name for the stream, and where it comes from.
    pub name: String,
    pub address: String,
    pub codec: String,
}

/// What the viewer knows about the stream right now, for overlays.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Live {
    /// Frames presented per second, over the last second.
    pub fps: f64,
    /// Received megabits per second, over the last second.
    pub mbps: f64,
    /// Frames lost over the last second (server and viewer).
    pub dropped: u64,
    /// Capture to presented, for the previous frame, ms.
    pub latency_ms: f64,
    /// Capture to presented over the last second: median and 95th percentile, ms.
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    /// The server's clock now, µs (our clock plus the measured offset; 0 when
    /// unknown): shown so a photo of the screen can check the latency against
    /// the time the test pattern draws into the picture.
    pub server_clock_us: u64,
}

/// Takes decoded frames. Call order: `start`, then `present` for each frame, then
/// `finish`. After a reconnect `start` is called again, maybe with a new geometry.
///
/// Not `Send`: a sink stays on the thread that opened it, because windows must
/// (the viewer presents on its calling thread for that reason).
pub trait FrameSink {
    /// A stream begins.
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError>;

    /// Shows or stores one frame. Must not keep a reference to it. `live` is for
    /// sinks that show figures (a window's overlay).
    fn present(&mut self, frame: &Frame, live: &Live) -> Result<Flow, SinkError>;

    /// True for a sink that would rather store the stream's payload as it came
    /// than decoded pixels, when the payload is whole pictures in `format`
    /// (`Jpeg`, or `H264` access units): a recording. It then gets frames in
    /// that format, with no decode and no re-encode.
    fn keeps(&self, format: PixelFormat) -> bool {
        let _ = format;
        false
    }

    /// True for a sink that can take JPEG frames as they are (a camera's MJPEG
    /// carried by `raw` or `lz4`): it stores or ignores them. Others (windows,
    /// Y4M) are given the frames decoded to RGB24.
    fn accepts_jpeg(&self) -> bool {
        self.keeps(PixelFormat::Jpeg)
    }

    /// No frame came for a while (about 0.1 s): a window handles its events here.
    fn idle(&mut self) -> Result<Flow, SinkError> {
        Ok(Flow::Continue)
    }

    /// The stream ended for good: flush and close.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// A sink backend's registration.
pub struct SinkBackend {
    pub name: &'static str,
    pub summary: &'static str,
    pub probe: fn() -> Availability,
    pub open: fn(&BackendConfig) -> Result<Box<dyn FrameSink>, BackendError>,
}

inventory::collect!(SinkBackend);
