//! `lz4`: LZ4 block compression (`lz4_flex`). Fast; shrinks flat content a lot and
//! camera content a little (about 10%).

use super::{CodecBackend, Encoded, FrameCodec};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::media::frame::{Frame, FrameInfo};

pub struct Lz4Codec;

inventory::submit! {
    CodecBackend {
        name: "lz4",
        summary: "LZ4 block compression, fast, lossless",
        probe: always,
        parallel: false,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameCodec>, BackendError> { Ok(Box::new(Lz4Codec)) },
    }
}

impl FrameCodec for Lz4Codec {
    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError> {
        let max = lz4_flex::block::get_maximum_output_size(frame.data.len());
        // Grows (zero-filling) only the part past the previous payload; no allocation
        // once the buffer reached the stream's size.
        out.resize(max, 0);
        let n =
            lz4_flex::block::compress_into(&frame.data, out).map_err(|e| CodecError::Encode {
                codec: "lz4",
                source: Box::new(e),
            })?;
        out.truncate(n);
        Ok(Encoded::WRITTEN)
    }

    fn max_payload(&self, info: &FrameInfo) -> usize {
        lz4_flex::block::get_maximum_output_size(info.byte_len())
    }

    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
        let expected = frame.info.byte_len();
        frame.data.resize(expected, 0);
        let n = lz4_flex::block::decompress_into(payload, &mut frame.data).map_err(|e| {
            CodecError::Decode {
                codec: "lz4",
                source: Box::new(e),
            }
        })?;
        if frame.info.format.is_compressed() && n > 0 {
            frame.data.truncate(n);
        } else if n != expected {
            return Err(CodecError::WrongSize {
                codec: "lz4",
                expected,
                got: n,
            });
        }
        Ok(())
    }
}
