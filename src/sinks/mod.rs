//! Frame sinks: where decoded pictures go.

use crate::config::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::frame::{Frame, StreamInfo};
use crate::registry::Availability;

pub mod file;
pub mod null;

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

/// Takes decoded frames. Call order: `start`, then `present` for each frame, then
/// `finish`. After a reconnect `start` is called again, maybe with a new geometry.
pub trait FrameSink: Send {
    /// A stream begins.
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError>;

    /// Shows or stores one frame. Must not keep a reference to it.
    fn present(&mut self, frame: &Frame) -> Result<Flow, SinkError>;

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
