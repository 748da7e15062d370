//! `record`: records the stream into a folder of files that ffmpeg, ffplay and mpv
//! play: H.264 streams as fragmented MP4 (`.mp4`, the access units as received,
//! one fragment per frame: browsers and VLC play it too), JPEG streams as MJPEG
//! (`.mjpeg`, the JPEGs one after another, as received: no decoding, no
//! encoding), everything else as Y4M (`.y4m`).
//!
//! - Each frame is one `write` of whole bytes; when a write fails (a full disk)
//!   the file is cut back to the end of the last whole frame, so every file ends
//!   on a frame boundary except after `kill -9` in the middle of a write, which
//!   leaves at most one partial frame at the end: players stop before it.
//! - Segments: a new file every `segment-seconds` or `segment-bytes`, named from
//!   `name` (strftime, local time): `record-20261123-221500.mjpeg`. An MP4
//!   segment starts on a keyframe, so it waits for the next one.
//! - H.264: the sink gets every frame of the chain it records (the viewer and
//!   the server hold back frames that follow one it missed, up to a keyframe);
//!   a frame the MP4 writer refuses is logged and skipped, and frames after it
//!   wait for the next keyframe, so a recording never holds a frame whose
//!   reference it lacks.
//! - `max-total-bytes` keeps the folder's recordings (files named like this
//!   sink's, and only those) under a cap by deleting the oldest; on a full disk the
//!   oldest is deleted and the write tried again, and when there is nothing left
//!   to delete the recording stops with an error that says so.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use super::{Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::annexb;
use crate::media::convert;
use crate::media::frame::{Frame, PixelFormat, StreamInfo};
use crate::media::mp4::{Fmp4Writer, Mp4Error};

inventory::submit! {
    SinkBackend {
        name: "record",
        summary: "records into a folder: .mp4 (H.264), .mjpeg (JPEG) or .y4m, in segments, with a size cap",
        probe: always,
        open,
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    dir: Option<Spanned<PathBuf>>,
    name: Option<Spanned<String>>,
    segment_seconds: Option<Spanned<f64>>,
    segment_bytes: Option<Spanned<u64>>,
    max_total_bytes: Option<Spanned<u64>>,
}

/// The validated options.
#[derive(Debug, Clone)]
struct Plan {
    dir: PathBuf,
    /// strftime template of a file name, without extension.
    name: String,
    segment_time: Option<Duration>,
    segment_bytes: Option<u64>,
    max_total: Option<u64>,
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameSink>, BackendError> {
    let opts: Options = table.parse()?;
    let dir = opts.dir.ok_or_else(|| {
        table.error("`dir` is required (for example `livestream serve --record DIR`)".into())
    })?;
    let name = match opts.name {
        None => "record-%Y%m%d-%H%M%S".to_string(),
        Some(n) => {
            let bad = n.get_ref().is_empty()
                || n.get_ref().contains('/')
                || n.get_ref().starts_with('%')
                || strftime_local(n.get_ref()).is_none();
            if bad {
                return Err(table
                    .error_at(
                        n.span(),
                        "a file name template: not empty, no `/`, starting with fixed text \
                         (for example \"garden-%Y%m%d-%H%M%S\")"
                            .into(),
                    )
                    .into());
            }
            n.into_inner()
        }
    };
    let positive = |v: &Option<Spanned<u64>>, what: &str| -> Result<Option<u64>, BackendError> {
        match v {
            None => Ok(None),
            Some(v) if *v.get_ref() == 0 => Ok(None),
            Some(v) if *v.get_ref() < 1 << 16 => Err(table
                .error_at(
                    v.span(),
                    format!("{what} must be 0 (off) or at least 65536"),
                )
                .into()),
            Some(v) => Ok(Some(*v.get_ref())),
        }
    };
    let segment_time = match &opts.segment_seconds {
        None => None,
        Some(s) if *s.get_ref() == 0.0 => None,
        Some(s) if (0.5..=86_400.0 * 7.0).contains(s.get_ref()) => {
            Some(Duration::from_secs_f64(*s.get_ref()))
        }
        Some(s) => {
            return Err(table
                .error_at(
                    s.span(),
                    "segment-seconds must be 0 (off) or 0.5 to 604800".into(),
                )
                .into())
        }
    };
    let dir_path = dir.get_ref().clone();
    std::fs::create_dir_all(&dir_path)
        .map_err(|e| BackendError::io(format!("cannot create {}", dir_path.display()), e))?;
    Ok(Box::new(RecordSink {
        plan: Plan {
            dir: dir_path,
            name,
            segment_time,
            segment_bytes: positive(&opts.segment_bytes, "segment-bytes")?,
            max_total: positive(&opts.max_total_bytes, "max-total-bytes")?,
        },
        stream: None,
        segment: None,
        buf: Vec::new(),
        planar: Vec::new(),
        mp4: Mp4State::default(),
        frames: 0,
        total: 0,
    }))
}

/// Formats `template` with the local time, or `None` if it does not fit.
fn strftime_local(template: &str) -> Option<String> {
    let c = std::ffi::CString::new(template).ok()?;
    // SAFETY: plain libc time calls with valid, owned buffers.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return None;
        }
        let mut out = [0u8; 256];
        let n = libc::strftime(out.as_mut_ptr().cast(), out.len(), c.as_ptr(), &tm);
        (n > 0).then(|| String::from_utf8_lossy(&out[..n]).into_owned())
    }
}

/// The file being written and how far it holds whole frames.
struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes of whole frames (and the header): where a failed write is cut back to.
    committed: u64,
    started: Instant,
}

pub struct RecordSink {
    plan: Plan,
    stream: Option<(StreamInfo, &'static str)>,
    segment: Option<Segment>,
    /// One frame's bytes, reused: written with one call.
    buf: Vec<u8>,
    /// Y4M planes, reused.
    planar: Vec<u8>,
    /// The MP4 writer of the current segment (H.264 streams).
    mp4: Mp4State,
    frames: u64,
    /// Bytes of this sink's recordings in the folder, as of the last look plus
    /// what was written since (the cap is checked against it).
    total: u64,
}

fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == ErrorKind::StorageFull
}

impl RecordSink {
    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> SinkError {
        SinkError::Io {
            what: format!("{what} {}", path.display()),
            source: e,
        }
    }

    /// Files of this sink's naming in the folder, oldest first, with sizes.
    fn recordings(&self) -> Vec<(PathBuf, u64)> {
        let prefix = self.plan.name.split('%').next().unwrap_or_default();
        let mut found: Vec<(std::time::SystemTime, PathBuf, u64)> =
            std::fs::read_dir(&self.plan.dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter_map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            let ours = name.starts_with(prefix)
                                && [".mp4", ".mjpeg", ".y4m"].iter().any(|e| name.ends_with(e));
                            let meta = e.metadata().ok()?;
                            let modified = meta.modified().ok()?;
                            (ours && meta.is_file()).then(|| (modified, e.path(), meta.len()))
                        })
                        .collect()
                })
                .unwrap_or_default();
        found.sort();
        found.into_iter().map(|(_, p, n)| (p, n)).collect()
    }

    /// Deletes the oldest recording that is not the one being written; false when
    /// there is none.
    fn delete_oldest(&self) -> bool {
        let current = self.segment.as_ref().map(|s| s.path.clone());
        for (path, _) in self.recordings() {
            if Some(&path) == current.as_ref() {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    log::info!("record: deleted the oldest recording {}", path.display());
                    return true;
                }
                Err(e) => log::warn!("record: cannot delete {}: {e}", path.display()),
            }
        }
        false
    }

    /// Keeps the folder's recordings under the cap, `extra` bytes about to come.
    /// Looks at the folder only when the running total says the cap is near.
    fn enforce_cap(&mut self, extra: u64) {
        let Some(cap) = self.plan.max_total else {
            return;
        };
        if self.total + extra <= cap {
            return;
        }
        loop {
            self.total = self.recordings().iter().map(|(_, n)| n).sum();
            if self.total + extra <= cap || !self.delete_oldest() {
                return;
            }
        }
    }

    fn new_segment(&mut self) -> Result<(), SinkError> {
        let Some((info, ext)) = self.stream else {
            return Ok(());
        };
        self.close_segment();
        let base = strftime_local(&self.plan.name).unwrap_or_else(|| "record".into());
        let mut path = self.plan.dir.join(format!("{base}.{ext}"));
        let mut n = 2;
        while path.exists() {
            path = self.plan.dir.join(format!("{base}-{n}.{ext}"));
            n += 1;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.io("cannot create", &path, e))?;
        log::info!("record: writing {}", path.display());
        self.mp4 = Mp4State::default();
        self.segment = Some(Segment {
            path,
            file,
            committed: 0,
            started: Instant::now(),
        });
        if ext == "y4m" {
            let header = y4m_header(&info)?;
            self.buf.clear();
            self.buf.extend_from_slice(header.as_bytes());
            self.write_buf()?;
        }
        Ok(())
    }

    fn close_segment(&mut self) {
        if self.mp4.skipped > 0 {
            log::info!(
                "record: {} H.264 frames not recorded (before the first keyframe, or after a refused frame)",
                self.mp4.skipped
            );
            self.mp4.skipped = 0;
        }
        if let Some(s) = self.segment.take() {
            if let Err(e) = s.file.sync_data() {
                log::warn!("record: syncing {}: {e}", s.path.display());
            }
        }
    }

    /// Writes `buf` whole at the end of the segment, or cuts the file back and
    /// fails. On a full disk, deletes the oldest recording and tries again.
    fn write_buf(&mut self) -> Result<(), SinkError> {
        loop {
            let Some(seg) = self.segment.as_mut() else {
                return Ok(());
            };
            match seg.file.write_all(&self.buf) {
                Ok(()) => {
                    seg.committed += self.buf.len() as u64;
                    self.total += self.buf.len() as u64;
                    return Ok(());
                }
                Err(e) => {
                    // Never leave half a frame: back to the last whole one.
                    let _ = seg.file.set_len(seg.committed);
                    let path = seg.path.clone();
                    if is_full(&e) && self.plan.max_total.is_some() && self.delete_oldest() {
                        continue;
                    }
                    let what = if is_full(&e) {
                        format!(
                            "the disk is full: recording stopped after {} frames; \
                             it plays up to there:",
                            self.frames
                        )
                    } else {
                        "writing".into()
                    };
                    return Err(self.io(&what, &path, e));
                }
            }
        }
    }
}

/// One MP4 segment's writer, and whether it waits for a keyframe after a
/// frame it could not take.
#[derive(Default)]
struct Mp4State {
    writer: Fmp4Writer,
    waiting: bool,
    skipped: u64,
}

/// What became of a frame offered to the MP4 writer.
enum Fragment {
    /// Its bytes are in the buffer.
    Ready,
    Skipped,
    /// A keyframe that does not continue this file (new parameter sets, or a
    /// clock that went back, as after the viewer reconnected to a restarted
    /// server): it starts a new one.
    NewFile,
}

impl Mp4State {
    /// Appends `frame`'s fragment (and, first, the init segment) to `out`.
    fn fragment(&mut self, frame: &Frame, keyframe: bool, out: &mut Vec<u8>) -> Fragment {
        if self.waiting && !keyframe {
            self.skipped += 1;
            return Fragment::Skipped;
        }
        match self.writer.push(&frame.data, frame.capture_us, out) {
            Ok(_) => {
                self.waiting = false;
                Fragment::Ready
            }
            // Before the file's first keyframe: nothing to lose yet.
            Err(Mp4Error::FirstNotKeyframe) => {
                self.skipped += 1;
                Fragment::Skipped
            }
            Err(
                Mp4Error::SizeChanged { .. }
                | Mp4Error::ParameterSetChanged { .. }
                | Mp4Error::TimeNotIncreasing { .. },
            ) if keyframe => Fragment::NewFile,
            Err(e) => {
                self.skipped += 1;
                if !self.waiting {
                    log::warn!(
                        "record: frame {} not recorded ({e}); the recording goes on at the next keyframe",
                        frame.seq
                    );
                }
                self.waiting = true;
                Fragment::Skipped
            }
        }
    }
}

/// The Y4M stream header for a raw stream.
pub(crate) fn y4m_header(info: &StreamInfo) -> Result<String, SinkError> {
    let colour = match convert::Planar::for_format(info.frame.format) {
        Some(convert::Planar::Yuv420) => "420jpeg",
        Some(convert::Planar::Yuv422) => "422",
        Some(convert::Planar::Yuv444) => "444",
        Some(convert::Planar::Mono) => "mono",
        None => {
            return Err(SinkError::Unsupported {
                sink: "y4m",
                what: format!("{} frames", info.frame.format),
            })
        }
    };
    let fps_milli = if info.fps > 0.0 {
        (info.fps * 1000.0).round() as u64
    } else {
        30_000
    };
    Ok(format!(
        "YUV4MPEG2 W{} H{} F{}:1000 Ip A1:1 C{} XCOLORRANGE=FULL\n",
        info.frame.width, info.frame.height, fps_milli, colour
    ))
}

impl FrameSink for RecordSink {
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        let ext = match meta.info.frame.format {
            PixelFormat::H264 => "mp4",
            PixelFormat::Jpeg => "mjpeg",
            _ => {
                y4m_header(&meta.info)?;
                "y4m"
            }
        };
        if self
            .stream
            .is_some_and(|(s, e)| s.frame == meta.info.frame && e == ext)
        {
            return Ok(());
        }
        // A new stream (or a new geometry): a new file.
        self.stream = Some((meta.info, ext));
        self.total = self.recordings().iter().map(|(_, n)| n).sum();
        self.enforce_cap(0);
        self.new_segment()
    }

    fn keeps(&self, format: PixelFormat) -> bool {
        matches!(format, PixelFormat::Jpeg | PixelFormat::H264)
    }

    fn present(&mut self, frame: &Frame, _live: &Live) -> Result<Flow, SinkError> {
        let Some((info, ext)) = self.stream else {
            return Ok(Flow::Continue);
        };
        if frame.info != info.frame {
            return Err(SinkError::Unsupported {
                sink: "record",
                what: format!("a {} frame in a {} stream", frame.info, info.frame),
            });
        }
        // An MP4 segment can only begin on a keyframe.
        let keyframe =
            ext != "mp4" || annexb::check_access_unit(&frame.data).is_ok_and(|a| a.keyframe);
        if let Some(seg) = self.segment.as_ref().filter(|_| keyframe) {
            let by_time = self
                .plan
                .segment_time
                .is_some_and(|t| seg.started.elapsed() >= t);
            let by_size = self.plan.segment_bytes.is_some_and(|b| seg.committed >= b);
            if by_time || by_size {
                self.new_segment()?;
            }
        }
        self.buf.clear();
        if ext == "mp4" {
            let mut fragment = self.mp4.fragment(frame, keyframe, &mut self.buf);
            if let Fragment::NewFile = fragment {
                log::info!("record: frame {} starts a new file", frame.seq);
                self.new_segment()?;
                fragment = self.mp4.fragment(frame, keyframe, &mut self.buf);
            }
            if !matches!(fragment, Fragment::Ready) {
                return Ok(Flow::Continue);
            }
        } else if ext == "mjpeg" {
            self.buf.extend_from_slice(&frame.data);
        } else {
            convert::to_planar(frame, &mut self.planar);
            self.buf.extend_from_slice(b"FRAME\n");
            self.buf.extend_from_slice(&self.planar);
        }
        self.enforce_cap(self.buf.len() as u64);
        self.write_buf()?;
        self.frames += 1;
        Ok(Flow::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.close_segment();
        Ok(())
    }
}
