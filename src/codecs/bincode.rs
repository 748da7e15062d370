//! `bincode`: the frame and its metadata serialised with bincode 2, a
//! self-describing payload that cross-checks the stream header.

use super::{CodecBackend, Encoded, FrameCodec};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::media::frame::{Frame, FrameInfo};

pub struct BincodeCodec;

inventory::submit! {
    CodecBackend {
        name: "bincode",
        summary: "frame + metadata serialised with bincode 2, uncompressed",
        probe: always,
        parallel: false,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameCodec>, BackendError> { Ok(Box::new(BincodeCodec)) },
    }
}

/// The payload. Borrowed on decode: nothing is allocated for `data`.
#[derive(::bincode::Encode, ::bincode::BorrowDecode)]
struct WireFrame<'a> {
    fourcc: [u8; 4],
    width: u32,
    height: u32,
    stride: u32,
    seq: u64,
    capture_us: u64,
    data: &'a [u8],
}

/// Fixed-width integers: the header costs the same for every frame.
fn config() -> impl ::bincode::config::Config {
    ::bincode::config::standard().with_fixed_int_encoding()
}

/// fourcc + 3 u32 + 2 u64 + the u64 length prefix of `data`.
const OVERHEAD: usize = 4 + 12 + 16 + 8;

impl FrameCodec for BincodeCodec {
    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError> {
        out.clear();
        let wire = WireFrame {
            fourcc: frame.info.format.fourcc(),
            width: frame.info.width,
            height: frame.info.height,
            stride: frame.info.stride,
            seq: frame.seq,
            capture_us: frame.capture_us,
            data: &frame.data,
        };
        ::bincode::encode_into_std_write(wire, out, config()).map_err(|e| CodecError::Encode {
            codec: "bincode",
            source: Box::new(e),
        })?;
        Ok(Encoded::WRITTEN)
    }

    fn max_payload(&self, info: &FrameInfo) -> usize {
        info.byte_len().saturating_add(OVERHEAD)
    }

    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
        let corrupt = |why: String| CodecError::Corrupt {
            codec: "bincode",
            why,
        };
        let (wire, used): (WireFrame, usize) =
            ::bincode::borrow_decode_from_slice(payload, config()).map_err(|e| {
                CodecError::Decode {
                    codec: "bincode",
                    source: Box::new(e),
                }
            })?;
        if used != payload.len() {
            return Err(corrupt(format!(
                "{} bytes after the frame",
                payload.len() - used
            )));
        }
        let info = frame.info;
        if wire.fourcc != info.format.fourcc()
            || wire.width != info.width
            || wire.height != info.height
            || wire.stride != info.stride
        {
            return Err(corrupt(format!(
                "frame says {}x{} stride {} {:?}, the stream header {info} stride {}",
                wire.width,
                wire.height,
                wire.stride,
                String::from_utf8_lossy(&wire.fourcc),
                info.stride
            )));
        }
        let expected = info.byte_len();
        let fits = if info.format.is_compressed() {
            !wire.data.is_empty() && wire.data.len() <= expected
        } else {
            wire.data.len() == expected
        };
        if !fits {
            return Err(CodecError::WrongSize {
                codec: "bincode",
                expected,
                got: wire.data.len(),
            });
        }
        frame.data.clear();
        frame.data.extend_from_slice(wire.data);
        frame.seq = wire.seq;
        frame.capture_us = wire.capture_us;
        Ok(())
    }
}
