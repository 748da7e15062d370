//! `livestream view`: connect, decode, present; reconnect when the server goes away.
//!
//! Threads: `net-reader` reads packets into pooled buffers and hands the newest to
//! the calling thread through a one-packet slot; the calling thread decodes and
//! presents (window sinks need the main thread). A slow sink drops frames here; it
//! never backs up the network reader.
//!
//! Latency: the calling thread pings the server once a second; the reader turns
//! the pongs into clock-offset samples ([`ClockSync`]). Every frame's stages —
//! captured, encoded, sent (server clock, from the frame's timing packet),
//! received, decoded, presented (ours, moved onto the server's clock by the
//! offset) — go into [`Stages`], the status line, the optional per-frame log, and
//! a report sent back to the server once a second (`docs/latency.md`).

use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Kind;
use crate::codecs::FrameCodec;
use crate::config::Config;
use crate::error::{CodecError, SinkError};
use crate::media::clock::ClockSync;
use crate::media::frame::{Frame, Limits, StreamInfo};
use crate::media::histogram::LatencyHistogram;
use crate::media::slot::{Slot, Taken};
use crate::net::io::DeadlineReader;
use crate::net::protocol::{self, ClientHello, Packet, PacketHeader, ProtocolError, ServerHello};
use crate::registry;
use crate::secure::{OpenReader, Rx, SealWriter, SecureError, Tx, ViewerAuth};
use crate::sinks::{Flow, FrameSink, Live, StreamMeta};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
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
        source: ConnectionError,
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

/// Why a connection failed or was lost: in the secure handshake, or in the
/// plaintext protocol above it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Secure(#[from] SecureError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl From<std::io::Error> for ConnectionError {
    fn from(e: std::io::Error) -> Self {
        ConnectionError::Protocol(e.into())
    }
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
}

/// Time spent in each stage, µs, for frames whose timing the server sent.
#[derive(Debug, Default, Clone)]
pub struct Stages {
    /// Captured → encoded (server).
    pub encode: LatencyHistogram,
    /// Encoded → written to this viewer's socket (server: waiting for the viewer).
    pub queue: LatencyHistogram,
    /// Written → received here (the network, and the kernel buffers on the way).
    pub network: LatencyHistogram,
    /// Received → decoded (here, including the wait for the decoder).
    pub decode: LatencyHistogram,
    /// Decoded → presented (the sink).
    pub present: LatencyHistogram,
}

impl Stages {
    pub fn all(&self) -> [(&'static str, &LatencyHistogram); 5] {
        [
            ("encode", &self.encode),
            ("queue", &self.queue),
            ("network", &self.network),
            ("decode", &self.decode),
            ("present", &self.present),
        ]
    }

    fn clear(&mut self) {
        for h in [
            &mut self.encode,
            &mut self.queue,
            &mut self.network,
            &mut self.decode,
            &mut self.present,
        ] {
            h.clear();
        }
    }
}

/// A received packet on its way from the reader to the decoder.
struct Received {
    header: PacketHeader,
    payload: Vec<u8>,
    /// When the payload was in (our clock, µs).
    received_us: u64,
    /// The server's stamps from the frame's timing packet: (encoded, sent).
    timing: Option<(u64, u64)>,
}

/// What the reader thread and the decoding thread share.
#[derive(Default)]
struct Shared {
    slot: Slot<Received>,
    /// Payload buffers to reuse.
    free: Mutex<Vec<Vec<u8>>>,
    dropped_here: AtomicU64,
    bytes: AtomicU64,
    /// Why the reader stopped.
    ended: Mutex<Option<Result<(String, bool), ProtocolError>>>,
    /// The server's clock against ours, from the handshake and the pongs.
    clock: Mutex<ClockSync>,
}

/// Connects to `address` and presents frames to `sink` until an end condition.
pub fn run(
    address: &str,
    sink: &mut dyn FrameSink,
    cfg: &Config,
    opts: &ViewOptions,
    stop: &AtomicBool,
) -> Result<ViewReport, ViewError> {
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut report = ViewReport {
        end: ViewEnd::Stopped,
        frames: 0,
        dropped_here: 0,
        dropped_upstream: 0,
        bytes: 0,
        connections: 0,
        latency: LatencyHistogram::default(),
        present: LatencyHistogram::default(),
        stages: Stages::default(),
        clock: None,
        stream: None,
    };
    let mut log = match &opts.latency_log {
        Some(path) => Some(LatencyLog::create(path).map_err(|e| {
            ViewError::Sink(SinkError::Io {
                what: format!("creating {}", path.display()),
                source: e,
            })
        })?),
        None => None,
    };
    let mut auth = match cfg.view.auth {
        crate::config::Auth::Pair => {
            let dir = match &cfg.view.key_dir {
                Some(d) => Ok(d.clone()),
                None => crate::secure::trust::default_dir(),
            };
            Some(
                dir.map_err(SecureError::from)
                    .and_then(|dir| ViewerAuth::open(&dir, cfg.view.pair.clone()))
                    .map_err(|e| ViewError::Connection {
                        address: address.to_string(),
                        source: e.into(),
                    })?,
            )
        }
        crate::config::Auth::None => {
            log::warn!(
                "auth = \"none\": this viewer connects without encryption or pairing; anyone on the network can see the stream"
            );
            None
        }
    };
    let mut backoff = BACKOFF_START;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break ViewEnd::Stopped;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break ViewEnd::Duration;
        }
        let failure = match connect(address, &opts.limits, auth.as_mut()) {
            Ok((link, hello, clock)) => {
                report.connections += 1;
                let frames_before = report.frames;
                let outcome = session(
                    link,
                    hello,
                    clock,
                    address,
                    sink,
                    cfg,
                    opts,
                    stop,
                    deadline,
                    &mut report,
                    log.as_mut(),
                );
                if report.frames > frames_before {
                    backoff = BACKOFF_START;
                }
                match outcome? {
                    SessionEnd::Done(end) => break end,
                    SessionEnd::Lost(e) => e.into(),
                }
            }
            Err(ConnectionError::Protocol(ProtocolError::Refused {
                status: protocol::Status::Ended,
                message,
            })) => break ViewEnd::StreamEnded(message),
            Err(e) => e,
        };
        // Pairing and key problems need a person: retrying cannot help.
        let final_ = match &failure {
            ConnectionError::Secure(e) => e.is_final(),
            ConnectionError::Protocol(ProtocolError::Refused { status, .. }) => {
                *status == protocol::Status::Unauthorized
            }
            _ => false,
        };
        if !opts.reconnect || final_ {
            sink.finish()?;
            return Err(ViewError::Connection {
                address: address.to_string(),
                source: failure,
            });
        }
        log::warn!(
            "{address}: {failure}; reconnecting in {:.1} s",
            backoff.as_secs_f64()
        );
        sleep_unless(stop, deadline, backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    };
    sink.finish()?;
    if let Some(log) = log.as_mut() {
        log.flush();
    }
    report.end = end;
    Ok(report)
}

/// The per-frame latency log (`view --latency-log`): CSV, times on the server's
/// clock in µs.
struct LatencyLog {
    out: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
}

impl LatencyLog {
    fn create(path: &std::path::Path) -> std::io::Result<LatencyLog> {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            out,
            "seq,captured_us,encoded_us,sent_us,received_us,decoded_us,presented_us,latency_ms,clock_offset_us,clock_rtt_us"
        )?;
        Ok(LatencyLog {
            out,
            path: path.to_path_buf(),
        })
    }

    /// One frame's line, written without allocating (stages the server did not
    /// time are left empty).
    fn row(
        &mut self,
        seq: u64,
        [captured, received, decoded, presented]: [i64; 4],
        timing: Option<(u64, u64)>,
        latency_us: u64,
        (offset, rtt): (i64, u64),
    ) {
        use std::io::Write;
        let out = &mut self.out;
        let written = write!(out, "{seq},{captured},")
            .and_then(|()| match timing {
                Some((encoded, sent)) => write!(out, "{encoded},{sent},"),
                None => write!(out, ",,"),
            })
            .and_then(|()| {
                writeln!(
                    out,
                    "{received},{decoded},{presented},{:.3},{offset},{rtt}",
                    latency_us as f64 / 1000.0
                )
            });
        if let Err(e) = written {
            log::warn!("latency log {}: {e}", self.path.display());
        }
    }

    fn flush(&mut self) {
        use std::io::Write;
        if let Err(e) = self.out.flush() {
            log::warn!("latency log {}: {e}", self.path.display());
        }
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

/// A connection past its handshake: the socket, and its two halves (sealed
/// with pairing, plaintext with `auth = "none"`).
struct Link {
    stream: TcpStream,
    tx: Tx<TcpStream>,
    rx: Rx<TcpStream>,
}

/// Connects and shakes hands (the secure handshake first, with `auth`). Returns
/// the link, the server's hello, and the handshake as a first clock sample (the
/// server stamped its hello once: t2 = t3).
fn connect(
    address: &str,
    limits: &Limits,
    mut auth: Option<&mut ViewerAuth>,
) -> Result<(Link, ServerHello, ClockSync), ConnectionError> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| ProtocolError::Invalid {
            what: "address",
            why: format!("{address}: {e}"),
        })?
        .collect();
    let mut last: ConnectionError = ProtocolError::Invalid {
        what: "address",
        why: format!("{address} resolves to nothing"),
    }
    .into();
    for addr in addrs {
        let stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let client_hello = ClientHello {
            version: protocol::VERSION,
        };
        let (hello, sent_us, tx, rx) = match auth.as_deref_mut() {
            Some(auth) => {
                let secured = auth.connect(&stream, address, deadline)?;
                // The server proved its key (its verdict opened): remember it now,
                // even if it turns out to be busy.
                auth.confirm(&secured, address);
                let mut tx = Tx::Sealed(SealWriter::new(stream.try_clone()?, secured.link.tx));
                let sent_us = crate::media::clock::now_us();
                client_hello.write(&mut tx)?;
                let mut reader = OpenReader::new(
                    DeadlineReader {
                        stream: &stream,
                        deadline,
                    },
                    secured.link.rx,
                );
                let hello = ServerHello::read(&mut reader, limits)?;
                let rx = Rx::Opened(reader.with_inner(stream.try_clone()?));
                (hello, sent_us, tx, rx)
            }
            None => {
                let sent_us = crate::media::clock::now_us();
                client_hello.write(&mut &stream)?;
                let hello = ServerHello::read(
                    &mut DeadlineReader {
                        stream: &stream,
                        deadline,
                    },
                    limits,
                )?;
                let rx = Rx::Plain(std::io::BufReader::with_capacity(
                    64 << 10,
                    stream.try_clone()?,
                ));
                (hello, sent_us, Tx::Plain(stream.try_clone()?), rx)
            }
        };
        let received_us = crate::media::clock::now_us();
        let mut clock = ClockSync::default();
        clock.add(
            sent_us,
            hello.server_time_us,
            hello.server_time_us,
            received_us,
        );
        return Ok((Link { stream, tx, rx }, hello, clock));
    }
    Err(last)
}

enum SessionEnd {
    Done(ViewEnd),
    /// The connection broke; maybe reconnect.
    Lost(ProtocolError),
}

#[allow(clippy::too_many_arguments)]
fn session(
    link: Link,
    hello: ServerHello,
    clock: ClockSync,
    address: &str,
    sink: &mut dyn FrameSink,
    cfg: &Config,
    opts: &ViewOptions,
    stop: &AtomicBool,
    deadline: Option<Instant>,
    report: &mut ViewReport,
    mut log: Option<&mut LatencyLog>,
) -> Result<SessionEnd, ViewError> {
    let backend = registry::codec(&hello.codec)
        .map_err(|e| ViewError::UnknownCodec(hello.codec.clone(), e))?;
    let mut codec: Box<dyn FrameCodec> = (backend.open)(&cfg.backend(Kind::Codec, &hello.codec))?;
    let max_payload = codec
        .max_payload(&hello.frame)
        .min(opts.limits.max_frame_bytes);
    // A sink that stores JPEG (a recording) gets the payload as it came.
    let keep_jpeg = sink.takes_jpeg() && codec.payload_is_jpeg(&hello.frame);
    // JPEG frames that a codec kept as they were (an MJPEG camera over `lz4` or
    // `raw`) become pixels for a sink that needs them.
    let mut to_pixels = match codec.decoded_info(&hello.frame).format {
        crate::media::frame::PixelFormat::Jpeg if !sink.accepts_jpeg() => {
            Some(crate::codecs::jpeg::JpegToPixels::new()?)
        }
        _ => None,
    };
    let info = StreamInfo {
        frame: if keep_jpeg {
            crate::media::frame::FrameInfo {
                format: crate::media::frame::PixelFormat::Jpeg,
                stride: 0,
                ..hello.frame
            }
        } else {
            let decoded = codec.decoded_info(&hello.frame);
            to_pixels
                .as_ref()
                .map_or(decoded, |p| p.decoded_info(&decoded))
        },
        fps: hello.fps,
    };
    report.stream = Some(info);
    log::info!(
        "connected to {address}: \"{}\", {} at {} fps, codec {}",
        hello.message,
        hello.frame,
        hello.fps,
        hello.codec
    );
    sink.start(&StreamMeta {
        info,
        name: hello.message.clone(),
        address: address.to_string(),
        codec: hello.codec.clone(),
    })?;

    // A server that sends nothing for this long is considered gone.
    let silence = Duration::from_secs_f64(if hello.fps > 0.0 {
        (4.0 / hello.fps).max(5.0)
    } else {
        5.0
    });
    let Link {
        stream,
        mut tx,
        rx: net_rx,
    } = link;
    let _ = stream.set_read_timeout(Some(silence));
    let shared = Arc::new(Shared {
        clock: Mutex::new(clock),
        ..Shared::default()
    });
    let reader = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("net-reader".into())
            .spawn(move || read_loop(net_rx, max_payload, &shared))
            .map_err(|e| ViewError::Connection {
                address: address.to_string(),
                source: e.into(),
            })?
    };

    let mut frame = Frame::empty();
    let mut status = Status::new(opts.quiet);
    let mut last_seq: Option<u64> = None;
    // Pings: five quick ones for a good first estimate, then one a second.
    let mut pings = 0u64;
    let mut next_ping = Instant::now();
    let result = loop {
        if Instant::now() >= next_ping {
            // A failed write shows up in the reader as a broken connection.
            let _ = protocol::write_ping(&mut tx, pings, crate::media::clock::now_us());
            pings += 1;
            // From now, not from when it was due: a stall sends one ping, not a burst.
            next_ping = Instant::now()
                + if pings < 5 {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(1)
                };
        }
        if stop.load(Ordering::Relaxed) {
            break Ok(SessionEnd::Done(ViewEnd::Stopped));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(SessionEnd::Done(ViewEnd::Duration));
        }
        if opts.frames.is_some_and(|n| report.frames >= n) {
            break Ok(SessionEnd::Done(ViewEnd::FrameLimit));
        }
        if let Some(r) = status.tick(&shared, &info, &hello.codec) {
            let _ = protocol::write_report(&mut tx, &r);
            if let Some(log) = log.as_mut() {
                log.flush();
            }
        }
        let mut rx = match shared.slot.take(Duration::from_millis(100)) {
            Taken::Value(rx) => rx,
            Taken::Timeout => match sink.idle() {
                Ok(Flow::Continue) => continue,
                Ok(Flow::Stop) => break Ok(SessionEnd::Done(ViewEnd::SinkClosed)),
                Err(e) => break Err(ViewError::Sink(e)),
            },
            Taken::Closed => {
                let ended = shared
                    .ended
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                break Ok(match ended {
                    Some(Ok((message, true))) => SessionEnd::Done(ViewEnd::StreamEnded(message)),
                    Some(Ok((message, false))) => SessionEnd::Lost(ProtocolError::Invalid {
                        what: "stream",
                        why: format!("the server went away: {message}"),
                    }),
                    Some(Err(e)) => SessionEnd::Lost(e),
                    None => SessionEnd::Lost(ProtocolError::Closed("by the peer")),
                });
            }
        };
        frame.info = hello.frame;
        frame.seq = rx.header.seq;
        frame.capture_us = rx.header.capture_us;
        let received_us = rx.received_us;
        let timing = rx.timing;
        let decoded = if keep_jpeg {
            if rx.payload.starts_with(&[0xFF, 0xD8]) {
                frame.info = info.frame;
                std::mem::swap(&mut frame.data, &mut rx.payload);
                Ok(())
            } else {
                Err(crate::error::CodecError::Corrupt {
                    codec: "jpeg",
                    why: "the payload does not start with a JPEG marker".into(),
                })
            }
        } else {
            codec.decode(&mut rx.payload, &mut frame)
        };
        shared
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rx.payload);
        // A camera's JPEG that does not decode is one bad picture, not a broken
        // server: skipped.
        if let (Ok(()), Some(p)) = (&decoded, to_pixels.as_mut()) {
            if let Err(e) = p.decode(&mut frame) {
                log::debug!("{address}: frame {}: {e}; skipped", rx.header.seq);
                shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        if let Err(e) = decoded {
            // A server that sends undecodable frames is broken: drop the connection.
            log::error!("{address}: frame {}: {e}", rx.header.seq);
            break Ok(SessionEnd::Lost(ProtocolError::Invalid {
                what: "frame",
                why: e.to_string(),
            }));
        }
        let decoded_us = crate::media::clock::now_us();
        let (offset, rtt) = shared
            .clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .offset()
            .unwrap_or((0, 0));
        status.live.server_clock_us = (decoded_us as i64 + offset).max(0) as u64;
        let presenting = Instant::now();
        let flow = match sink.present(&frame, &status.live) {
            Ok(flow) => flow,
            Err(e) => break Err(ViewError::Sink(e)),
        };
        let presented_us = crate::media::clock::now_us();
        report
            .present
            .record(presenting.elapsed().as_micros() as u64);
        // Every stage on the server's clock.
        let on_server = |t: u64| t as i64 + offset;
        let captured = frame.capture_us as i64;
        let span = |a: i64, b: i64| (b - a).max(0) as u64;
        let latency = span(captured, on_server(presented_us));
        report.latency.record(latency);
        status.latency.record(latency);
        status.live.latency_ms = latency as f64 / 1000.0;
        let (received, decoded_at, presented) = (
            on_server(received_us),
            on_server(decoded_us),
            on_server(presented_us),
        );
        if let Some((encoded, sent)) = timing {
            let (encoded, sent) = (encoded as i64, sent as i64);
            for stages in [&mut report.stages, &mut status.stages] {
                stages.encode.record(span(captured, encoded));
                stages.queue.record(span(encoded, sent));
                stages.network.record(span(sent, received));
                stages.decode.record(span(received, decoded_at));
                stages.present.record(span(decoded_at, presented));
            }
        }
        report.clock = Some((offset, rtt));
        if let Some(log) = log.as_mut() {
            log.row(
                frame.seq,
                [captured, received, decoded_at, presented],
                timing,
                latency,
                (offset, rtt),
            );
        }
        status.frames += 1;
        report.frames += 1;
        if let Some(last) = last_seq {
            let gap = frame.seq.saturating_sub(last + 1);
            report.dropped_upstream += gap;
            status.dropped_upstream += gap;
        }
        last_seq = Some(frame.seq);
        if flow == Flow::Stop {
            break Ok(SessionEnd::Done(ViewEnd::SinkClosed));
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = reader.join();
    report.dropped_here += shared.dropped_here.load(Ordering::Relaxed);
    report.bytes += shared.bytes.load(Ordering::Relaxed);
    result
}

fn read_loop(mut r: Rx<TcpStream>, max_payload: usize, shared: &Shared) {
    // The timing packet comes just before its frame.
    let mut timing: Option<(u64, u64, u64)> = None;
    let ended = loop {
        let mut payload = shared
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        match protocol::read_packet(&mut r, max_payload, &mut payload) {
            Ok(Packet::Frame(header)) => {
                let received_us = crate::media::clock::now_us();
                shared.bytes.fetch_add(
                    (payload.len() + protocol::PACKET_HEADER_LEN) as u64,
                    Ordering::Relaxed,
                );
                let timing = timing
                    .take()
                    .filter(|t| t.0 == header.seq)
                    .map(|(_, e, s)| (e, s));
                if let Some(stale) = shared.slot.put(Received {
                    header,
                    payload,
                    received_us,
                    timing,
                }) {
                    shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                    shared
                        .free
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(stale.payload);
                }
            }
            Ok(Packet::End { message, final_ }) => break Ok((message, final_)),
            Ok(Packet::Timing {
                seq,
                encoded_us,
                sent_us,
            }) => {
                timing = Some((seq, encoded_us, sent_us));
                shared
                    .free
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(payload);
            }
            Ok(Packet::Pong { t1, t2, t3, .. }) => {
                let t4 = crate::media::clock::now_us();
                shared
                    .clock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(t1, t2, t3, t4);
                shared
                    .free
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(payload);
            }
            Err(e) => break Err(e),
        }
    };
    *shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
    shared.slot.close();
}

/// The once-a-second status line.
struct Status {
    quiet: bool,
    since: Instant,
    frames: u64,
    bytes_at: u64,
    dropped_at: u64,
    dropped_upstream: u64,
    latency: LatencyHistogram,
    stages: Stages,
    /// The last second's figures, for sinks with an overlay.
    live: Live,
}

impl Status {
    fn new(quiet: bool) -> Status {
        Status {
            quiet,
            since: Instant::now(),
            frames: 0,
            bytes_at: 0,
            dropped_at: 0,
            dropped_upstream: 0,
            latency: LatencyHistogram::default(),
            stages: Stages::default(),
            live: Live::default(),
        }
    }

    /// Once a second: prints the status line and returns the report for the
    /// server.
    fn tick(
        &mut self,
        shared: &Shared,
        info: &StreamInfo,
        codec: &str,
    ) -> Option<protocol::Report> {
        let elapsed = self.since.elapsed();
        if elapsed < Duration::from_secs(1) {
            return None;
        }
        let us = |p: f64| self.latency.percentile(p).unwrap_or(0.0);
        let report = protocol::Report {
            last_us: (self.live.latency_ms * 1000.0) as u64,
            p50_us: us(0.5) as u64,
            p95_us: us(0.95) as u64,
            frames: self.frames,
        };
        self.live.latency_p50_ms = us(0.5) / 1000.0;
        self.live.latency_p95_ms = us(0.95) / 1000.0;
        // The server dropped a quarter of the frames for us: the link cannot carry
        // the stream, and frames are dropped to keep the picture live.
        let too_slow = self.dropped_upstream * 3 > self.frames.max(1);
        let secs = elapsed.as_secs_f64();
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let dropped = shared.dropped_here.load(Ordering::Relaxed);
        self.live.fps = self.frames as f64 / secs;
        self.live.mbps = (bytes - self.bytes_at) as f64 * 8.0 / secs / 1e6;
        self.live.dropped = self.dropped_upstream + dropped - self.dropped_at;
        if !self.quiet {
            let ms = |p: f64| {
                self.latency
                    .percentile(p)
                    .map_or("-".into(), |us| format!("{:.1}", us / 1000.0))
            };
            let stages: Vec<String> = self
                .stages
                .all()
                .iter()
                .filter_map(|(name, h)| Some(format!("{name} {:.1}", h.percentile(0.5)? / 1000.0)))
                .collect();
            let clock = shared
                .clock
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .offset()
                .map_or(String::new(), |(_, rtt)| {
                    format!("  clock ±{:.2} ms", rtt as f64 / 2000.0)
                });
            eprintln!(
                "{:.1} fps  {:.1} Mbit/s  dropped {} (server {}, here {})  latency {} ms (p50 {}, p95 {}{}){clock}  {} {}{}",
                self.frames as f64 / secs,
                (bytes - self.bytes_at) as f64 * 8.0 / secs / 1e6,
                self.dropped_upstream + dropped - self.dropped_at,
                self.dropped_upstream,
                dropped - self.dropped_at,
                self.latency.mean_us().map_or("-".into(), |us| format!("{:.1}", us / 1000.0)),
                ms(0.5),
                ms(0.95),
                if stages.is_empty() {
                    String::new()
                } else {
                    format!("; p50 {}", stages.join(", "))
                },
                info.frame,
                codec,
                if too_slow {
                    "  LINK TOO SLOW: the server drops frames to keep the picture live"
                } else {
                    ""
                },
            );
        } else if too_slow {
            log::warn!("the link is too slow for this stream: the server drops frames to keep the picture live");
        }
        self.since = Instant::now();
        self.frames = 0;
        self.bytes_at = bytes;
        self.dropped_at = dropped;
        self.dropped_upstream = 0;
        self.latency.clear();
        self.stages.clear();
        Some(report)
    }
}
