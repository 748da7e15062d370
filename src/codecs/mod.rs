//! Frame codecs: how a frame travels over the wire.

use crate::config::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::frame::{Frame, FrameInfo};
use crate::registry::Availability;

pub mod bincode;
pub mod lz4;
pub mod raw;

/// What `encode` produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// The payload is in `out`.
    Written,
    /// The frame's own bytes are the payload, unchanged: send `frame.data` (no copy).
    Passthrough,
}

/// Turns frames into payloads and back. One instance per stream and direction.
///
/// The caller owns every buffer: `encode` writes into a `Vec` the caller reuses,
/// `decode` writes into a frame the caller reuses. Neither allocates once the
/// buffers have grown to the stream's size.
pub trait FrameCodec: Send {
    /// Encodes `frame` into `out` (cleared first), or says the frame's bytes are the
    /// payload as they are.
    ///
    /// Errors: [`CodecError::Unsupported`] for a pixel format the codec cannot carry.
    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError>;

    /// The largest payload this codec can produce for a frame of `info`, which must be
    /// valid. Decoders reject anything larger before reading it.
    fn max_payload(&self, info: &FrameInfo) -> usize;

    /// Decodes `payload` into `frame`. The caller has already set `frame.info` from the
    /// validated stream header, and `frame.seq` / `frame.capture_us` from the packet;
    /// the decoder fills `frame.data` with exactly `frame.info.byte_len()` bytes (for
    /// JPEG-in-JPEG-out, the whole image). It may swap `payload`'s buffer into the
    /// frame instead of copying, leaving the frame's old buffer in `payload`.
    ///
    /// Errors: `WrongSize` or `Corrupt` for a payload that does not decode to exactly
    /// the announced frame. The input is untrusted: never a panic.
    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError>;
}

/// A codec backend's registration.
pub struct CodecBackend {
    pub name: &'static str,
    pub summary: &'static str,
    pub probe: fn() -> Availability,
    pub new: fn(&BackendConfig) -> Result<Box<dyn FrameCodec>, BackendError>,
}

inventory::collect!(CodecBackend);
