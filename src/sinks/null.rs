//! `null`: counts frames and throws them away. For tests and benchmarks.

use super::{Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::frame::Frame;

inventory::submit! {
    SinkBackend {
        name: "null",
        summary: "counts frames and discards them (tests, benchmarks)",
        probe: always,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameSink>, BackendError> { Ok(Box::new(NullSink::default())) },
    }
}

#[derive(Default)]
pub struct NullSink {
    pub frames: u64,
}

impl FrameSink for NullSink {
    /// Counting needs no pixels: JPEG frames are not decoded for it.
    fn accepts_jpeg(&self) -> bool {
        true
    }

    fn start(&mut self, _meta: &StreamMeta) -> Result<(), SinkError> {
        Ok(())
    }

    fn present(&mut self, _frame: &Frame, _live: &Live) -> Result<Flow, SinkError> {
        self.frames += 1;
        Ok(Flow::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        log::info!("null sink: {} frames", self.frames);
        Ok(())
    }
}
