//! `livestream view`: connect, decode, present; reconnect when the server goes away.
//!
//! | file | thread | job |
//! |------|--------|-----|
//! | `mod.rs` | calling | the reconnect loop with backoff |
//! | `connect.rs` | calling | TCP, the secure handshake, the hellos |
//! | `session.rs` | calling | newest frame → decode → present, pings |
//! | `reader.rs` | `net-reader` | packets into pooled buffers, the newest into a one-frame slot |
//! | `latency.rs`, `status.rs` | calling | the latency book, the status line |
//!
//! The calling thread decodes and presents (window sinks need the main
//! thread). A slow sink drops frames here; it never backs up the network reader.
//!
//! Latency: the calling thread pings the server once a second; the reader turns
//! the pongs into clock-offset samples ([`ClockSync`](crate::media::clock::ClockSync)). Every frame's stages —
//! captured, encoded, sent (server clock, from the frame's timing packet),
//! received, decoded, presented (ours, moved onto the server's clock by the
//! offset) — go into [`Stages`], the status line, the optional per-frame log, and
//! a report sent back to the server once a second (`docs/latency.md`).

mod connect;
mod latency;
mod reader;
mod session;
mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{CodecError, SinkError};
use crate::media::frame::{Limits, StreamInfo};
use crate::media::histogram::LatencyHistogram;
use crate::net::protocol::{ProtocolError, Status};
use crate::registry;
use crate::secure::{SecureError, ViewerAuth};
use crate::sinks::FrameSink;

use latency::LatencyLog;
pub use latency::Stages;
use session::{SessionEnd, Setup};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How a viewer runs.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Stop after presenting this many frames.
    pub frames: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// No status line.
    pub quiet: bool,
    /// Reconnect with backoff when the connection fails or drops.
    pub reconnect: bool,
    pub limits: Limits,
    /// Write every frame's stage times here (CSV).
    pub latency_log: Option<std::path::PathBuf>,
}

/// Why a viewer ended normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewEnd {
    FrameLimit,
    Duration,
    /// Ctrl-C, SIGTERM, or the caller's stop flag.
    Stopped,
    /// The sink is done (a window was closed).
    SinkClosed,
    /// The server said the stream is over.
    StreamEnded(String),
}

/// Why a viewer could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{address}: {source}")]
    Connection {
        address: String,
        #[source]
        source: Lost,
    },
    #[error("the server uses codec `{0}`, which this build does not have")]
    UnknownCodec(String, #[source] registry::UnknownBackend),
    #[error("the server sent a bad frame: {0}")]
    Codec(#[from] CodecError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("codec set-up: {0}")]
    Backend(#[from] crate::error::BackendError),
}

/// What a viewer did.
#[derive(Debug)]
pub struct ViewReport {
    pub end: ViewEnd,
    pub frames: u64,
    /// Frames lost here because the sink was slower than the network.
    pub dropped_here: u64,
    /// Frames the server skipped for this viewer (gaps in sequence numbers).
    pub dropped_upstream: u64,
    /// Frames received but not decoded: an inter-frame stream's chain broke,
    /// and the viewer waited for a keyframe.
    pub waited_for_keyframe: u64,
    /// Keyframes this viewer asked the server for.
    pub keyframes_asked: u64,
    pub bytes: u64,
    pub connections: u32,
    /// Capture to presented, on the server's clock (see `docs/latency.md`).
    pub latency: LatencyHistogram,
    /// Time spent in the sink's `present`, µs.
    pub present: LatencyHistogram,
    /// Each stage of the frames' way, µs.
    pub stages: Stages,
    /// The last clock offset (server minus here, µs) and the round trip it was
    /// measured over.
    pub clock: Option<(i64, u64)>,
    pub stream: Option<StreamInfo>,
    /// From the start of the first connection to its first picture presented
    /// (connect, handshake, the keyframe made for this viewer, decode).
    pub first_picture: Option<Duration>,
    /// The longest time between two pictures presented in one connection
    /// (after a drop: until the keyframe that resumes the stream is shown).
    pub longest_gap: Duration,
}

/// Why a connection was lost, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// The server said goodbye without ending the stream: it is restarting or
    /// shutting down. An ordinary end: reconnect.
    #[error("the server went away: {0}")]
    ServerGone(String),
    /// The server sent a frame that does not decode: it is broken.
    #[error("the server sent a bad frame: {0}")]
    BadFrame(#[source] CodecError),
    /// The secure handshake failed: pairing, keys, or an attack.
    #[error(transparent)]
    Secure(#[from] SecureError),
    #[error(transparent)]
    Link(#[from] ProtocolError),
}

impl Lost {
    /// Pairing and key problems need a person: retrying cannot help.
    fn is_final(&self) -> bool {
        match self {
            Lost::Secure(e) => e.is_final(),
            Lost::Link(ProtocolError::Refused { status, .. }) => *status == Status::Unauthorized,
            _ => false,
        }
    }
}

/// The viewer's keys and pins, unless `auth = "none"`.
fn open_auth(cfg: &Config) -> Result<Option<ViewerAuth>, SecureError> {
    match cfg.view.auth {
        crate::config::Auth::Pair => {
            let dir = match &cfg.view.key_dir {
                Some(d) => d.clone(),
                None => crate::secure::trust::default_dir()?,
            };
            Ok(Some(ViewerAuth::open(&dir, cfg.view.pair.clone())?))
        }
        crate::config::Auth::None => {
            log::warn!(
                "auth = \"none\": this viewer connects without encryption or pairing; anyone on the network can see the stream"
            );
            Ok(None)
        }
    }
}

impl ViewReport {
    fn new() -> ViewReport {
        ViewReport {
            end: ViewEnd::Stopped,
            frames: 0,
            dropped_here: 0,
            dropped_upstream: 0,
            waited_for_keyframe: 0,
            keyframes_asked: 0,
            bytes: 0,
            connections: 0,
            latency: LatencyHistogram::default(),
            present: LatencyHistogram::default(),
            stages: Stages::default(),
            clock: None,
            stream: None,
            first_picture: None,
            longest_gap: Duration::ZERO,
        }
    }
}

/// Connects to `address` and presents frames to `sink` until an end condition.
/// Reconnects with backoff when the connection fails or drops, unless told not
/// to or the failure needs a person.
pub fn run(
    address: &str,
    sink: &mut dyn FrameSink,
    cfg: &Config,
    opts: &ViewOptions,
    stop: &AtomicBool,
) -> Result<ViewReport, ViewError> {
    let setup = Setup {
        address,
        cfg,
        opts,
        stop,
        deadline: opts.duration.map(|d| Instant::now() + d),
    };
    let mut report = ViewReport::new();
    let mut log = match &opts.latency_log {
        Some(path) => Some(LatencyLog::create(path).map_err(|e| SinkError::Io {
            what: format!("creating {}", path.display()),
            source: e,
        })?),
        None => None,
    };
    let lost = |source: Lost| ViewError::Connection {
        address: address.to_string(),
        source,
    };
    let mut auth = open_auth(cfg).map_err(|e| lost(Lost::Secure(e)))?;
    let mut backoff = BACKOFF_START;
    let end = loop {
        if let Some(end) = stopping(&setup) {
            break end;
        }
        let connecting = Instant::now();
        // A sink that keeps the H.264 it is sent (a recording) wants one
        // picture size throughout.
        let renditions = !sink.keeps(crate::media::frame::PixelFormat::H264);
        let failure = match connect::connect(address, &opts.limits, auth.as_mut(), renditions) {
            Ok(conn) => {
                report.connections += 1;
                let frames_before = report.frames;
                let outcome =
                    session::session(conn, connecting, &setup, sink, &mut report, log.as_mut());
                if report.frames > frames_before {
                    backoff = BACKOFF_START;
                }
                match outcome? {
                    SessionEnd::Done(end) => break end,
                    SessionEnd::Lost(e) => e,
                }
            }
            Err(Lost::Link(ProtocolError::Refused {
                status: Status::Ended,
                message,
            })) => break ViewEnd::StreamEnded(message),
            Err(e) => e,
        };
        if !opts.reconnect || failure.is_final() {
            sink.finish()?;
            return Err(lost(failure));
        }
        log::warn!(
            "{address}: {failure}; reconnecting in {:.1} s",
            backoff.as_secs_f64()
        );
        sleep_unless(stop, setup.deadline, backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    };
    sink.finish()?;
    if let Some(log) = log.as_mut() {
        log.flush();
    }
    report.end = end;
    Ok(report)
}

/// Stopped, or out of time, before a connection.
fn stopping(setup: &Setup<'_>) -> Option<ViewEnd> {
    if setup.stop.load(Ordering::Relaxed) {
        Some(ViewEnd::Stopped)
    } else if setup.deadline.is_some_and(|d| Instant::now() >= d) {
        Some(ViewEnd::Duration)
    } else {
        None
    }
}

/// Sleeps for `d`, waking early when `stop` is set or the deadline passes.
fn sleep_unless(stop: &AtomicBool, deadline: Option<Instant>, d: Duration) {
    let until = Instant::now() + d;
    let until = deadline.map_or(until, |dl| dl.min(until));
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}
