//! `file`: replays a recording made by the `file` sink, at its original pace or as
//! fast as possible, once or in a loop.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use serde::Deserialize;

use super::{pace_until, FrameSource, SourceBackend};
use crate::backend::always;
use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, Limits, StreamInfo};
use crate::media::recording::{RecordingError, RecordingReader};

inventory::submit! {
    SourceBackend {
        name: "file",
        summary: "replays a recording made by the file sink (H.264 ones as recorded)",
        probe: always,
        devices: None,
        open,
    }
}

#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Pace {
    /// As recorded, from the capture times.
    #[default]
    Original,
    /// As fast as the reader can go.
    Fast,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    path: Option<PathBuf>,
    pace: Pace,
    /// Start again at the end instead of ending the stream.
    #[serde(rename = "loop")]
    repeat: bool,
}

fn open(
    _capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let opts: Options = table.parse()?;
    let path = opts.path.ok_or_else(|| {
        table.error("`path` is required (for example --set sources.file.path=recording.lsr)".into())
    })?;
    let file = File::open(&path)
        .map_err(|e| BackendError::io(format!("cannot open {}", path.display()), e))?;
    let reader = RecordingReader::new(BufReader::with_capacity(1 << 20, file), &Limits::default())
        .map_err(|e| BackendError::Invalid {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
    Ok(Box::new(FileSource {
        path,
        reader,
        pace: opts.pace,
        repeat: opts.repeat,
        seq: 0,
        clock_offset: None,
        last_due: None,
    }))
}

pub struct FileSource {
    path: PathBuf,
    reader: RecordingReader<BufReader<File>>,
    pace: Pace,
    repeat: bool,
    /// Frames get fresh, gap-free sequence numbers.
    seq: u64,
    /// Now minus the recorded capture time of the first frame replayed in this pass.
    clock_offset: Option<i128>,
    /// When the previous frame was due, so a loop keeps the frame interval.
    last_due: Option<u64>,
}

impl FileSource {
    fn corrupt(&self, e: RecordingError) -> SourceError {
        SourceError::Corrupt {
            what: self.path.display().to_string(),
            why: e.to_string(),
        }
    }

    /// The nominal frame interval, from the recording's frame rate (30 fps if unknown).
    fn interval_us(&self) -> u64 {
        let fps = self.reader.stream_info().fps;
        (1e6 / if fps > 0.0 { fps } else { 30.0 }) as u64
    }

    fn rewind(&mut self) -> Result<(), SourceError> {
        self.clock_offset = None;
        self.reader.rewind().map_err(|e| SourceError::Io {
            what: format!("rewinding {}", self.path.display()),
            source: e,
        })
    }
}

impl FrameSource for FileSource {
    fn stream_info(&self) -> StreamInfo {
        self.reader.stream_info()
    }

    fn paces_itself(&self) -> bool {
        self.pace == Pace::Original
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let mut got = self.reader.read(frame).map_err(|e| self.corrupt(e))?;
        if !got && self.repeat {
            self.rewind()?;
            got = self.reader.read(frame).map_err(|e| self.corrupt(e))?;
        }
        if !got {
            return Err(SourceError::EndOfStream);
        }
        let now = crate::media::clock::now_us() as i128;
        // A new pass starts one frame interval after the last frame of the previous one.
        let start = match self.last_due {
            Some(last) => last as i128 + self.interval_us() as i128,
            None => now,
        };
        let offset = *self
            .clock_offset
            .get_or_insert(start - frame.capture_us as i128);
        let due = (frame.capture_us as i128 + offset).max(0) as u64;
        self.last_due = Some(due);
        if self.pace == Pace::Original {
            // Bounded: a recording with a long gap does not stall the stream for more
            // than a second at a time.
            pace_until(due.min(now as u64 + 1_000_000));
        }
        frame.capture_us = crate::media::clock::now_us();
        frame.seq = self.seq;
        self.seq += 1;
        Ok(())
    }
}
