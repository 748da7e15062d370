//! `raw`: the frame's bytes as they are. No CPU cost, no copy; needs a fast link.

use super::{CodecBackend, Encoded, FrameCodec};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::media::frame::{Frame, FrameInfo};

pub struct RawCodec;

inventory::submit! {
    CodecBackend {
        name: "raw",
        summary: "uncompressed frames, zero copy (needs a wired link)",
        probe: always,
        parallel: false,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameCodec>, BackendError> { Ok(Box::new(RawCodec)) },
    }
}

impl FrameCodec for RawCodec {
    fn encode(&mut self, _frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError> {
        out.clear();
        Ok(Encoded::PASSTHROUGH)
    }

    fn max_payload(&self, info: &FrameInfo) -> usize {
        info.byte_len()
    }

    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
        let expected = frame.info.byte_len();
        let fits = if frame.info.format.is_compressed() {
            !payload.is_empty() && payload.len() <= expected
        } else {
            payload.len() == expected
        };
        if !fits {
            return Err(CodecError::WrongSize {
                codec: "raw",
                expected,
                got: payload.len(),
            });
        }
        std::mem::swap(payload, &mut frame.data);
        Ok(())
    }
}
