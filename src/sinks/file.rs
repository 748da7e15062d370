//! `file`: records the stream, either in livestream's own format (which the `file`
//! source replays exactly) or as Y4M (which ffmpeg, ffplay and mpv open).
//!
//! Each frame is handed to the kernel before the next one is taken, so a recording
//! cut by a crash or `kill -9` holds every frame up to the last whole one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Deserialize;

use super::{Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::convert;
use crate::media::frame::{Frame, PixelFormat, StreamInfo};
use crate::media::recording;

inventory::submit! {
    SinkBackend {
        name: "file",
        summary: "records to a file: livestream's own format (replayable) or .y4m",
        probe: always,
        open,
    }
}

#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Container {
    /// By the file name: `.y4m` is Y4M, anything else livestream's own format.
    #[default]
    Auto,
    Native,
    Y4m,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    path: Option<PathBuf>,
    format: Container,
    /// An H.264 stream's access units as received (the `file` source replays
    /// them without re-encoding) instead of decoded pictures.
    keep_h264: bool,
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameSink>, BackendError> {
    let opts: Options = table.parse()?;
    let path = opts.path.ok_or_else(|| {
        table.error("`path` is required (for example --set sinks.file.path=recording.lsr)".into())
    })?;
    let container = match opts.format {
        Container::Auto
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("y4m")) =>
        {
            Container::Y4m
        }
        Container::Auto => Container::Native,
        c => c,
    };
    if opts.keep_h264 && container == Container::Y4m {
        return Err(table
            .error("`keep-h264` needs livestream's own format, not Y4M".into())
            .into());
    }
    let file = File::create(&path)
        .map_err(|e| BackendError::io(format!("cannot create {}", path.display()), e))?;
    Ok(Box::new(FileSink {
        path,
        container,
        keep_h264: opts.keep_h264,
        out: BufWriter::with_capacity(1 << 20, file),
        stream: None,
        planar: Vec::new(),
    }))
}

pub struct FileSink {
    path: PathBuf,
    container: Container,
    keep_h264: bool,
    out: BufWriter<File>,
    /// The stream being written; a file holds one geometry.
    stream: Option<StreamInfo>,
    /// Reused buffer for Y4M planes.
    planar: Vec<u8>,
}

impl FileSink {
    fn io(&self, e: std::io::Error) -> SinkError {
        SinkError::Io {
            what: format!("writing {}", self.path.display()),
            source: e,
        }
    }

    fn y4m_header(&mut self, info: &StreamInfo) -> Result<(), SinkError> {
        let header = super::record::y4m_header(info).map_err(|_| SinkError::Unsupported {
            sink: "file",
            what: format!(
                "{} frames as Y4M (record them in the native format)",
                info.frame.format
            ),
        })?;
        self.out
            .write_all(header.as_bytes())
            .map_err(|e| self.io(e))
    }
}

impl FrameSink for FileSink {
    fn keeps(&self, format: PixelFormat) -> bool {
        self.keep_h264 && format == PixelFormat::H264
    }

    /// livestream's own format keeps JPEG frames as they are; Y4M needs pixels.
    fn accepts_jpeg(&self) -> bool {
        self.container == Container::Native
    }

    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        match self.stream {
            Some(s) if s.frame == meta.info.frame => Ok(()),
            Some(s) => Err(SinkError::Unsupported {
                sink: "file",
                what: format!(
                    "a change of geometry from {} to {} in one file",
                    s.frame, meta.info.frame
                ),
            }),
            None => {
                match self.container {
                    Container::Y4m => self.y4m_header(&meta.info)?,
                    _ => recording::write_header(&mut self.out, &meta.info)
                        .map_err(|e| self.io(e))?,
                }
                self.stream = Some(meta.info);
                Ok(())
            }
        }
    }

    fn present(&mut self, frame: &Frame, _live: &Live) -> Result<Flow, SinkError> {
        let written = match self.container {
            Container::Y4m => {
                let mut planar = std::mem::take(&mut self.planar);
                convert::to_planar(frame, &mut planar);
                let r = self
                    .out
                    .write_all(b"FRAME\n")
                    .and_then(|_| self.out.write_all(&planar));
                self.planar = planar;
                r
            }
            _ => recording::write_record(&mut self.out, frame),
        };
        written
            .and_then(|_| self.out.flush())
            .map_err(|e| self.io(e))?;
        Ok(Flow::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }
}
