//! `livestream serve`: capture once, encode once, send to every viewer.
//!
//! Threads (each named, stoppable, joined):
//! - `capture`: source → codec → a pooled, shared packet → every viewer's slot;
//! - `encode-N` (CPU-heavy codecs only): encode the newest captured frame;
//! - `http-jpeg` (only when the payload is not JPEG): JPEG for browsers, working
//!   only while one watches;
//! - `accept`: takes connections and starts a thread for each;
//! - `viewer-ADDR`: tells the wire protocol from HTTP on the same port, shakes
//!   hands (or reads the request), then writes the newest packet of its slot.
//!
//! A viewer's slot holds one packet: a viewer that cannot keep up loses frames
//! for itself only, and capture never waits for anyone.

pub mod http;
pub mod local_sinks;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{Availability, Kind};
use crate::codecs::{Encoded, FrameCodec};
use crate::config::Config;
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, StreamInfo};
use crate::media::slot::{Slot, Taken};
use crate::net::io::DeadlineReader;
use crate::net::protocol::{self, ClientHello, PacketHeader, ServerHello, Status};
use crate::registry;
use crate::secure::{OpenReader, Rx, SealWriter, Tx};
use crate::sources::FrameSource;

/// Connections still in their handshake beyond which new ones are closed at once:
/// a flood of idle connections cannot pile up threads.
const MAX_HANDSHAKING: usize = 64;
/// A viewer that accepts no bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long viewers get to receive the end-of-stream packet at shutdown.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Unknown(#[from] registry::UnknownBackend),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("source failed: {0}")]
    Source(#[source] SourceError),
    #[error("local sink {name}: {why}")]
    LocalSink { name: String, why: String },
    #[error(transparent)]
    Secure(#[from] crate::secure::SecureError),
}

/// One encoded frame, shared by every viewer that sends it. Recycled through a
/// pool: no allocation per frame once the pool has grown.
pub(crate) struct Packet {
    pub(crate) frame: Frame,
    encoded: Vec<u8>,
    passthrough: bool,
    /// When the encoder finished with it (server clock, µs).
    pub(crate) encoded_us: u64,
}

impl Packet {
    pub(crate) fn payload(&self) -> &[u8] {
        if self.passthrough {
            &self.frame.data
        } else {
            &self.encoded
        }
    }
}

/// Counters of one viewer.
#[derive(Debug, Default)]
pub struct ViewerCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub bytes: AtomicU64,
    /// Capture to sent (the write returned), smoothed, µs.
    pub latency_us: AtomicU64,
}

/// What a native viewer sent back: pings waiting for their pong, and its last
/// latency report.
#[derive(Debug, Default)]
pub(crate) struct Upstream {
    /// (id, t1, t2): ping `id` sent at `t1` (viewer clock), read here at `t2`.
    pings: Mutex<std::collections::VecDeque<(u64, u64, u64)>>,
    report: Mutex<Option<protocol::Report>>,
}

/// How a viewer watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `livestream view`, the wire protocol.
    Native,
    /// A browser or media player: MJPEG over HTTP.
    Http,
    /// The server's own JPEG transcoder (not a viewer; not in the stats).
    Internal,
    /// A sink on the server itself (in the stats as a local sink).
    Local,
}

pub(crate) struct Viewer {
    pub(crate) peer: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) slot: Slot<Arc<Packet>>,
    pub(crate) counters: ViewerCounters,
    pub(crate) upstream: Upstream,
    connected: Instant,
}

impl Viewer {
    pub(crate) fn new(peer: SocketAddr, protocol: Protocol) -> Arc<Viewer> {
        Arc::new(Viewer {
            peer,
            protocol,
            slot: Slot::default(),
            counters: ViewerCounters::default(),
            upstream: Upstream::default(),
            connected: Instant::now(),
        })
    }

    /// Counts one packet written, and how late it was.
    pub(crate) fn sent(&self, packet: &Packet, bytes: usize) {
        let c = &self.counters;
        c.sent.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let late = crate::media::clock::now_us().saturating_sub(packet.frame.capture_us);
        let old = c.latency_us.load(Ordering::Relaxed);
        let smoothed = if old == 0 { late } else { (old * 7 + late) / 8 };
        c.latency_us.store(smoothed, Ordering::Relaxed);
    }

    fn stats(&self) -> ViewerStats {
        let c = &self.counters;
        let sent = c.sent.load(Ordering::Relaxed);
        let secs = self.connected.elapsed().as_secs_f64();
        ViewerStats {
            peer: self.peer,
            protocol: self.protocol,
            sent,
            dropped: c.dropped.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            fps: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
            latency_ms: c.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            reported_latency: self
                .upstream
                .report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|r| ReportedLatency {
                    last_ms: r.last_us as f64 / 1000.0,
                    p50_ms: r.p50_us as f64 / 1000.0,
                    p95_ms: r.p95_us as f64 / 1000.0,
                }),
            connected_seconds: secs,
        }
    }
}

/// Totals of the capture thread.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub frames: u64,
    /// Captured frames that were never sent: no encoder was free in time.
    pub encoder_dropped: u64,
    pub source_ns: u64,
    pub encode_ns: u64,
}

/// A snapshot of one viewer's counters (`/stats`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewerStats {
    pub peer: SocketAddr,
    pub protocol: Protocol,
    /// Frames written to this viewer.
    pub sent: u64,
    /// Frames skipped for this viewer because it was still busy with an older one.
    pub dropped: u64,
    /// Bytes written, framing included.
    pub bytes: u64,
    /// Frames sent per second since it connected.
    pub fps: f64,
    /// Capture to sent, smoothed, ms (measured on the server).
    pub latency_ms: f64,
    /// Capture to presented, as the viewer measured it over its last seconds
    /// (native viewers that report it).
    pub reported_latency: Option<ReportedLatency>,
    pub connected_seconds: f64,
}

/// A viewer's own latency figures, capture to presented, ms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReportedLatency {
    pub last_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// A snapshot of the whole server (`/stats`, `/metrics`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStats {
    pub name: String,
    pub source: String,
    pub codec: String,
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate of the source (0 = unpaced).
    pub fps: f64,
    /// Frames captured per second, over the last second.
    pub capture_fps: f64,
    pub frames_captured: u64,
    /// Captured frames no encoder was free for.
    pub encoder_dropped: u64,
    pub uptime_seconds: f64,
    pub viewers: Vec<ViewerStats>,
    /// Sinks on the server itself (preview, recording).
    pub local_sinks: Vec<crate::server::local_sinks::LocalSinkStats>,
}

/// A set of viewers fed the same packets.
#[derive(Default)]
pub(crate) struct Fanout {
    viewers: Mutex<Vec<Arc<Viewer>>>,
    /// One past the newest published sequence number (under the viewers lock).
    next_seq: AtomicU64,
    /// Packets not published because a newer one went out first.
    late: AtomicU64,
}

impl Fanout {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Arc<Viewer>>> {
        self.viewers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `packet` to every viewer, unless a newer frame went out already
    /// (parallel encoders can finish out of order).
    fn publish(&self, packet: &Arc<Packet>) {
        let viewers = self.lock();
        let seq = packet.frame.seq;
        if self.next_seq.load(Ordering::Relaxed) > seq {
            self.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        for v in viewers.iter() {
            if v.slot.put(packet.clone()).is_some() {
                v.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn remove(&self, viewer: &Arc<Viewer>) {
        self.lock().retain(|v| !Arc::ptr_eq(v, viewer));
    }

    fn is_empty(&self) -> bool {
        self.lock().iter().all(|v| v.protocol == Protocol::Internal)
    }

    fn close_all(&self) {
        for v in self.lock().iter() {
            v.slot.close();
        }
    }
}

/// What capture, the encoders and the viewers share.
pub(crate) struct Hub {
    /// Viewers of the encoded stream: native ones, and HTTP ones when the payload
    /// is JPEG already.
    pub(crate) main: Fanout,
    /// HTTP viewers fed by the JPEG transcoder, when the payload is not JPEG.
    pub(crate) jpeg: Fanout,
    /// The encoded payload is a JPEG a browser can show as it is.
    pub(crate) payload_is_jpeg: bool,
    pub(crate) max_viewers: usize,
    /// HTTP is answered on this port.
    http: bool,
    /// Viewers admitted and not yet gone, of every kind.
    watching: AtomicUsize,
    handshaking: AtomicUsize,
    pub(crate) stream: StreamInfo,
    pub(crate) codec: String,
    max_payload: u32,
    pub(crate) name: String,
    source_name: String,
    started: Instant,
    captured: AtomicU64,
    served: AtomicU64,
    /// CPU time spent in the source and in the encoder, summed, ns.
    source_ns: AtomicU64,
    encode_ns: AtomicU64,
    /// Frames no encoder was free for.
    encoder_dropped: AtomicU64,
    /// Capture rate over the last second, f64 bits.
    capture_fps: AtomicU64,
    /// Set when the stream is over: the end message, and whether it is final.
    end: Mutex<Option<(String, bool)>>,
    /// Sinks on the server itself.
    pub(crate) locals: Mutex<Vec<Arc<crate::server::local_sinks::LocalSink>>>,
    /// Pairing and encryption; `None` with `auth = "none"`.
    pub(crate) auth: Option<Arc<crate::secure::ServerAuth>>,
}

impl Hub {
    /// Where HTTP viewers get their JPEG frames.
    pub(crate) fn http_feed(&self) -> &Fanout {
        if self.payload_is_jpeg {
            &self.main
        } else {
            &self.jpeg
        }
    }

    /// Viewers watching now, of every kind.
    pub(crate) fn watchers(&self) -> usize {
        self.watching.load(Ordering::Relaxed)
    }

    /// Adds a viewer to `feed` unless the server is full or the stream is over;
    /// `Err` says why not. Every admitted viewer must [`Hub::leave`].
    pub(crate) fn admit(
        &self,
        feed: &Fanout,
        viewer: &Arc<Viewer>,
    ) -> Result<(), (Status, String)> {
        if let Some((end, final_)) = self.end_message() {
            return Err((if final_ { Status::Ended } else { Status::Busy }, end));
        }
        self.watching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_viewers).then_some(n + 1)
            })
            .map_err(|_| {
                (
                    Status::Busy,
                    format!(
                        "the server is busy: {} viewers already watching",
                        self.max_viewers
                    ),
                )
            })?;
        feed.lock().push(viewer.clone());
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn leave(&self, feed: &Fanout, viewer: &Arc<Viewer>) {
        feed.remove(viewer);
        self.watching.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ends the stream for every viewer (now and later). `final_`: the source is
    /// done, viewers should not reconnect.
    fn finish(&self, why: &str, final_: bool) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        end.get_or_insert_with(|| (why.to_string(), final_));
        drop(end);
        self.main.close_all();
        self.jpeg.close_all();
    }

    pub(crate) fn end_message(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn stats(&self) -> ServerStats {
        // One lock at a time: never two fan-out locks held together.
        let mut viewers: Vec<ViewerStats> = Vec::new();
        for feed in [&self.main, &self.jpeg] {
            let list = feed.lock();
            viewers.extend(
                list.iter()
                    .filter(|v| !matches!(v.protocol, Protocol::Internal | Protocol::Local))
                    .map(|v| v.stats()),
            );
        }
        viewers.sort_by_key(|v| v.peer);
        ServerStats {
            name: self.name.clone(),
            source: self.source_name.clone(),
            codec: self.codec.clone(),
            format: self.stream.frame.format.name().into(),
            width: self.stream.frame.width,
            height: self.stream.frame.height,
            fps: self.stream.fps,
            capture_fps: f64::from_bits(self.capture_fps.load(Ordering::Relaxed)),
            frames_captured: self.captured.load(Ordering::Relaxed),
            encoder_dropped: self.encoder_dropped.load(Ordering::Relaxed)
                + self.main.late.load(Ordering::Relaxed),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            viewers,
            local_sinks: self
                .locals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|l| l.stats())
                .collect(),
        }
    }
}

/// A running server: its threads run until [`RunningServer::stop`] or drop.
pub struct RunningServer {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    capture: Option<JoinHandle<Result<(), SourceError>>>,
    transcoder: Option<JoinHandle<()>>,
    /// `sink-NAME` threads.
    locals: Vec<JoinHandle<()>>,
    /// The mDNS announcement, while it lasts.
    advertiser: Option<crate::net::discovery::Advertiser>,
    accept: Option<JoinHandle<Vec<Connection>>>,
}

pub fn open_source(cfg: &Config) -> Result<(Box<dyn FrameSource>, String), ServeError> {
    let name = cfg.serve.source.as_str();
    if name != "auto" {
        let backend = registry::source(name)?;
        if let Availability::Unavailable(why) = (backend.probe)() {
            log::warn!("source {name} may not work here: {why}");
        }
        let source = (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, name))?;
        return Ok((source, name.to_string()));
    }
    for backend in crate::sources::cameras() {
        if (backend.probe)() != Availability::Available {
            continue;
        }
        match (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, backend.name)) {
            Ok(source) => return Ok((source, backend.name.to_string())),
            Err(e) => log::warn!("camera source {} did not open: {e}", backend.name),
        }
    }
    log::warn!(
        "no camera found: streaming the test pattern instead. Choose a source with \
         --source NAME or `source` in [serve] of livestream.toml; `livestream backends` lists them"
    );
    let source = (registry::source("test-pattern")?.open)(
        &cfg.capture,
        &cfg.backend(Kind::Source, "test-pattern"),
    )?;
    Ok((source, "test-pattern".into()))
}

/// When to stop capturing by itself (for tests and benchmarks); default: never.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeLimits {
    pub frames: Option<u64>,
    pub duration: Option<Duration>,
}

impl RunningServer {
    /// Opens the source and codec, binds, and starts the threads.
    pub fn start(cfg: &Config, limits: ServeLimits) -> Result<RunningServer, ServeError> {
        let (source, source_name) = open_source(cfg)?;
        let codec_backend = registry::codec(&cfg.serve.codec)?;
        let encoders = match cfg.serve.encode_threads {
            0 if codec_backend.parallel => {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
            }
            0 => 1,
            n => n,
        };
        let codecs = (0..encoders)
            .map(|_| (codec_backend.open)(&cfg.backend(Kind::Codec, &cfg.serve.codec)))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = source.stream_info();
        let max_payload = codecs[0].max_payload(&stream.frame).min(u32::MAX as usize) as u32;
        let payload_is_jpeg = codecs[0].payload_is_jpeg(&stream.frame);
        // The JPEG encoder for browsers, used only while one watches.
        let transcoder = if payload_is_jpeg || !cfg.serve.http {
            None
        } else {
            Some((registry::codec("jpeg")?.open)(
                &cfg.backend(Kind::Codec, "jpeg"),
            )?)
        };

        let auth = match cfg.serve.auth {
            crate::config::Auth::Pair => {
                let dir = match &cfg.serve.key_dir {
                    Some(d) => d.clone(),
                    None => crate::secure::trust::default_dir()
                        .map_err(crate::secure::SecureError::from)?,
                };
                Some(Arc::new(crate::secure::ServerAuth::open(
                    &dir,
                    &cfg.serve.name,
                )?))
            }
            crate::config::Auth::None => None,
        };
        let listener = TcpListener::bind(&cfg.serve.listen).map_err(|e| ServeError::Listen {
            addr: cfg.serve.listen.clone(),
            source: e,
        })?;
        let addr = listener.local_addr().map_err(|e| ServeError::Listen {
            addr: cfg.serve.listen.clone(),
            source: e,
        })?;
        let hub = Arc::new(Hub {
            main: Fanout::default(),
            jpeg: Fanout::default(),
            payload_is_jpeg,
            max_viewers: cfg.serve.max_viewers,
            http: cfg.serve.http,
            watching: AtomicUsize::new(0),
            handshaking: AtomicUsize::new(0),
            stream,
            codec: cfg.serve.codec.clone(),
            max_payload,
            name: cfg.serve.name.clone(),
            source_name,
            started: Instant::now(),
            captured: AtomicU64::new(0),
            served: AtomicU64::new(0),
            source_ns: AtomicU64::new(0),
            encode_ns: AtomicU64::new(0),
            encoder_dropped: AtomicU64::new(0),
            capture_fps: AtomicU64::new(0),
            end: Mutex::new(None),
            locals: Mutex::default(),
            auth,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str| std::thread::Builder::new().name(name.into());

        // Local sinks first, so a recording holds every frame from the first.
        let mut locals = Vec::new();
        for name in &cfg.serve.sinks {
            match crate::server::local_sinks::start(name, cfg, &hub, &stop) {
                Ok(t) => locals.push(t),
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    hub.finish("the server could not start", true);
                    for t in locals {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        let capture = {
            let (hub, stop) = (hub.clone(), stop.clone());
            spawn("capture")
                .spawn(move || capture_loop(source, codecs, &hub, &stop, limits))
                .map_err(ServeError::Thread)?
        };
        let mut server = RunningServer {
            addr,
            hub: hub.clone(),
            stop: stop.clone(),
            capture: Some(capture),
            transcoder: None,
            locals,
            advertiser: None,
            accept: None,
        };
        if cfg.serve.discovery {
            let what = crate::net::discovery::Announcement {
                name: cfg.serve.name.clone(),
                codec: cfg.serve.codec.clone(),
                size: format!("{}x{}", stream.frame.width, stream.frame.height),
                pairing: match &hub.auth {
                    Some(_) => "required".into(),
                    None => "none".into(),
                },
                key: hub.auth.as_ref().map(|a| a.fingerprint()),
            };
            match crate::net::discovery::Advertiser::start(addr, &what) {
                Ok(a) => server.advertiser = a,
                // A convenience: the server works without it.
                Err(e) => log::warn!("not announced on the network: {e}"),
            }
        }

        if let Some(codec) = transcoder {
            let (hub, stop) = (hub.clone(), stop.clone());
            server.transcoder = Some(
                spawn("http-jpeg")
                    .spawn(move || transcode_loop(codec, &hub, &stop))
                    .map_err(ServeError::Thread)?,
            );
        }
        let timeout = cfg.serve.handshake_timeout;
        let rate = cfg.serve.connections_per_second;
        server.accept = Some(
            spawn("accept")
                .spawn(move || accept_loop(listener, &hub, &stop, timeout, rate))
                .map_err(ServeError::Thread)?,
        );
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn source_name(&self) -> &str {
        &self.hub.source_name
    }

    pub fn stream_info(&self) -> StreamInfo {
        self.hub.stream
    }

    /// True once the source has ended (a finite recording, or the frame limit).
    pub fn finished(&self) -> bool {
        self.capture.as_ref().is_none_or(|c| c.is_finished())
    }

    pub fn frames_captured(&self) -> u64 {
        self.hub.captured.load(Ordering::Relaxed)
    }

    /// Frames captured and the time spent capturing and encoding them.
    pub fn timing(&self) -> Timing {
        Timing {
            frames: self.hub.captured.load(Ordering::Relaxed),
            encoder_dropped: self.hub.encoder_dropped.load(Ordering::Relaxed)
                + self.hub.main.late.load(Ordering::Relaxed),
            source_ns: self.hub.source_ns.load(Ordering::Relaxed),
            encode_ns: self.hub.encode_ns.load(Ordering::Relaxed),
        }
    }

    /// Everything `/stats` reports.
    /// Pairing and encryption, unless `auth = "none"`.
    pub fn auth(&self) -> Option<&crate::secure::ServerAuth> {
        self.hub.auth.as_deref()
    }

    pub fn stats(&self) -> ServerStats {
        self.hub.stats()
    }

    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        self.hub.stats().viewers
    }

    /// Stops capture, says goodbye to every viewer and joins every thread.
    /// (Dropping the server does the same, without the result.)
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ServeError> {
        if self.capture.is_none() && self.accept.is_none() {
            return Ok(());
        }
        self.stop.store(true, Ordering::SeqCst);
        // Gone from viewers' lists first.
        self.advertiser = None;
        let captured = self.capture.take().map(|c| c.join());
        self.hub.finish("the server is shutting down", false);
        if let Some(t) = self.transcoder.take() {
            let _ = t.join();
        }
        for t in self.locals.drain(..) {
            let _ = t.join();
        }
        let connections = self
            .accept
            .take()
            .and_then(|a| a.join().ok())
            .unwrap_or_default();
        // Connections get a moment to send their end packet; any still stuck (a
        // write to a stalled viewer, a handshake not yet done) is cut off.
        let deadline = Instant::now() + GOODBYE_GRACE;
        while Instant::now() < deadline && connections.iter().any(|c| !c.thread.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for c in connections {
            if !c.thread.is_finished() {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
            let _ = c.thread.join();
        }
        log::info!(
            "stopped after {} frames; served {} viewers",
            self.hub.captured.load(Ordering::Relaxed),
            self.hub.served.load(Ordering::Relaxed)
        );
        match captured {
            Some(Ok(Err(e))) => Err(ServeError::Source(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Recycled packets, shared by capture and the encoders. A packet goes back here
/// after it is published; it is reused once no viewer holds it any more, so the
/// pool stops growing at (viewers × 2 + encoders + 1) packets.
#[derive(Default)]
struct PacketPool(Mutex<Vec<Arc<Packet>>>);

impl PacketPool {
    fn take(&self) -> Arc<Packet> {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match pool.iter_mut().position(|p| Arc::get_mut(p).is_some()) {
            Some(i) => pool.swap_remove(i),
            None => Arc::new(Packet {
                frame: Frame::empty(),
                encoded: Vec::new(),
                passthrough: false,
                encoded_us: 0,
            }),
        }
    }

    fn give(&self, packet: Arc<Packet>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(packet);
    }
}

/// Encodes a captured packet (which nobody else holds yet), publishes it, and
/// returns it to the pool.
fn encode_and_publish(
    codec: &mut dyn FrameCodec,
    mut packet: Arc<Packet>,
    hub: &Hub,
    pool: &PacketPool,
) {
    if let Some(p) = Arc::get_mut(&mut packet) {
        // CPU time, not wall time.
        let t0 = crate::media::clock::thread_cpu_ns();
        let encoded = codec.encode(&p.frame, &mut p.encoded);
        hub.encode_ns
            .fetch_add(crate::media::clock::thread_cpu_ns() - t0, Ordering::Relaxed);
        match encoded {
            Ok(e) => {
                p.passthrough = e == Encoded::Passthrough;
                p.encoded_us = crate::media::clock::now_us();
                hub.main.publish(&packet);
            }
            Err(e) => log::error!("encoding frame {} failed: {e}", p.frame.seq),
        }
    }
    pool.give(packet);
}

/// The capture thread: source → (encoders) → viewers. With one codec it encodes
/// inline; with several it hands the newest frame to whichever encoder thread is
/// free (a frame no encoder was free for is dropped, never queued), and the hub
/// publishes frames in order, dropping any that an encoder finished too late.
fn capture_loop(
    mut source: Box<dyn FrameSource>,
    codecs: Vec<Box<dyn FrameCodec>>,
    hub: &Hub,
    stop: &AtomicBool,
    limits: ServeLimits,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let pool = PacketPool::default();
    let work: Slot<Arc<Packet>> = Slot::default();
    std::thread::scope(|scope| {
        let mut codecs = codecs;
        let mut inline = if codecs.len() == 1 {
            codecs.pop()
        } else {
            None
        };
        for (i, mut codec) in codecs.into_iter().enumerate() {
            let (work, pool) = (&work, &pool);
            let spawned = std::thread::Builder::new()
                .name(format!("encode-{i}"))
                .spawn_scoped(scope, move || loop {
                    match work.take(Duration::from_millis(500)) {
                        Taken::Value(packet) => {
                            encode_and_publish(codec.as_mut(), packet, hub, pool)
                        }
                        Taken::Timeout => {}
                        Taken::Closed => break,
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start encoder thread {i}: {e}");
            }
        }
        let mut failures = 0u32;
        let mut meter = (Instant::now(), 0u64);
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let captured = hub.captured.load(Ordering::Relaxed);
            if limits.frames.is_some_and(|n| captured >= n)
                || limits.duration.is_some_and(|d| started.elapsed() >= d)
            {
                hub.finish("the stream has ended (frame or time limit)", true);
                break Ok(());
            }
            let mut packet = pool.take();
            let Some(p) = Arc::get_mut(&mut packet) else {
                unreachable!("the pool hands out unshared packets")
            };
            // CPU time, not wall time: pacing sleeps are not work.
            let t0 = crate::media::clock::thread_cpu_ns();
            let captured = source.next_frame(&mut p.frame);
            hub.source_ns
                .fetch_add(crate::media::clock::thread_cpu_ns() - t0, Ordering::Relaxed);
            match captured {
                Ok(()) => failures = 0,
                Err(SourceError::EndOfStream) => {
                    hub.finish("the source has ended", true);
                    break Ok(());
                }
                Err(SourceError::Timeout(_)) => {
                    pool.give(packet);
                    continue;
                }
                Err(e) => {
                    pool.give(packet);
                    failures += 1;
                    log::error!("capture failed: {e}");
                    if failures >= 10 {
                        hub.finish("the source failed", true);
                        break Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let captured = hub.captured.fetch_add(1, Ordering::Relaxed) + 1;
            if meter.0.elapsed() >= Duration::from_secs(1) {
                let fps = (captured - meter.1) as f64 / meter.0.elapsed().as_secs_f64();
                hub.capture_fps.store(fps.to_bits(), Ordering::Relaxed);
                meter = (Instant::now(), captured);
            }
            match inline.as_mut() {
                Some(codec) => encode_and_publish(codec.as_mut(), packet, hub, &pool),
                None => {
                    if let Some(stale) = work.put(packet) {
                        hub.encoder_dropped.fetch_add(1, Ordering::Relaxed);
                        pool.give(stale);
                    }
                }
            }
        };
        work.close();
        result
    })
}

/// The `http-jpeg` thread: while browsers watch a stream whose payload is not
/// JPEG, it takes the newest captured frame and encodes it as JPEG for them.
/// With no browser watching it is not subscribed and costs nothing.
fn transcode_loop(mut codec: Box<dyn FrameCodec>, hub: &Hub, stop: &AtomicBool) {
    let me = Viewer::new(SocketAddr::from(([0, 0, 0, 0], 0)), Protocol::Internal);
    let pool = PacketPool::default();
    let mut subscribed = false;
    while !stop.load(Ordering::Relaxed) {
        let wanted = !hub.jpeg.is_empty();
        if wanted != subscribed {
            if wanted {
                hub.main.lock().push(me.clone());
            } else {
                hub.main.remove(&me);
                while let Taken::Value(_) = me.slot.take(Duration::ZERO) {}
            }
            subscribed = wanted;
        }
        let source = match me.slot.take(Duration::from_millis(100)) {
            Taken::Value(p) => p,
            Taken::Timeout => continue,
            Taken::Closed => break,
        };
        let mut out = pool.take();
        let Some(o) = Arc::get_mut(&mut out) else {
            unreachable!("the pool hands out unshared packets")
        };
        o.frame.info = source.frame.info;
        o.frame.seq = source.frame.seq;
        o.frame.capture_us = source.frame.capture_us;
        o.passthrough = false;
        // The captured frame, not the packet's payload: no decode needed. A JPEG
        // frame (MJPEG camera) comes back as it is, with tables added if missing.
        match codec.encode(&source.frame, &mut o.encoded) {
            Ok(encoded) => {
                if encoded == Encoded::Passthrough {
                    o.encoded.clear();
                    o.encoded.extend_from_slice(&source.frame.data);
                }
                hub.jpeg.publish(&out);
            }
            Err(e) => log::error!("JPEG for browsers: frame {}: {e}", source.frame.seq),
        }
        drop(source);
        pool.give(out);
    }
    hub.main.remove(&me);
}

/// A connection's thread, and a handle to its socket to cut it off at shutdown.
struct Connection {
    thread: JoinHandle<()>,
    stream: TcpStream,
}

/// New connections allowed per address: a token bucket each, refilled at `rate`
/// a second up to twice that. Bounded: idle addresses are forgotten, and at most
/// [`RATE_TABLE`] are tracked (the idlest go first).
struct RateLimit {
    rate: f64,
    buckets: std::collections::HashMap<std::net::IpAddr, (f64, Instant, u64)>,
    last_report: Instant,
}

const RATE_TABLE: usize = 4096;

impl RateLimit {
    fn new(rate: f64) -> RateLimit {
        RateLimit {
            rate,
            buckets: std::collections::HashMap::new(),
            last_report: Instant::now(),
        }
    }

    /// Whether a connection from `ip` may go on.
    fn allow(&mut self, ip: std::net::IpAddr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let now = Instant::now();
        if self.buckets.len() >= RATE_TABLE && !self.buckets.contains_key(&ip) {
            // Forget addresses whose bucket has refilled, or failing that the idlest.
            let burst = self.rate * 2.0;
            let rate = self.rate;
            self.buckets
                .retain(|_, (tokens, at, _)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
            if self.buckets.len() >= RATE_TABLE {
                if let Some(idlest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, at, _))| *at)
                    .map(|(k, _)| *k)
                {
                    self.buckets.remove(&idlest);
                }
            }
        }
        let burst = self.rate * 2.0;
        let (tokens, at, refused) = self.buckets.entry(ip).or_insert((burst, now, 0));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return true;
        }
        *refused += 1;
        false
    }

    /// Once a second: which addresses were refused, and how often.
    fn report(&mut self) {
        if self.last_report.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_report = Instant::now();
        for (ip, (_, _, refused)) in self.buckets.iter_mut() {
            if *refused > 0 {
                log::warn!(
                    "refused {refused} connections from {ip}: over {} a second",
                    self.rate
                );
                *refused = 0;
            }
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
    handshake_timeout: Duration,
    rate: f64,
) -> Vec<Connection> {
    let mut connections: Vec<Connection> = Vec::new();
    let mut limit = RateLimit::new(rate);
    while !stop.load(Ordering::Relaxed) {
        limit.report();
        if !wait_readable(&listener, Duration::from_millis(200)) {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        if !limit.allow(peer.ip()) {
            continue; // dropped: closed at once
        }
        // Reap viewers that have left.
        let (done, running): (Vec<_>, Vec<_>) =
            connections.drain(..).partition(|c| c.thread.is_finished());
        connections = running;
        done.into_iter().for_each(|c| drop(c.thread.join()));

        if hub.handshaking.load(Ordering::Relaxed) >= MAX_HANDSHAKING {
            log::debug!("{peer}: closed at once, {MAX_HANDSHAKING} connections are already in their handshake");
            continue;
        }
        let handle = match stream.try_clone() {
            Ok(h) => h,
            Err(e) => {
                log::warn!("{peer}: {e}");
                continue;
            }
        };
        hub.handshaking.fetch_add(1, Ordering::Relaxed);
        let (hub2, stop2) = (hub.clone(), stop.clone());
        match std::thread::Builder::new()
            .name(format!("viewer-{peer}"))
            .spawn(move || serve_connection(stream, peer, &hub2, &stop2, handshake_timeout))
        {
            Ok(thread) => connections.push(Connection {
                thread,
                stream: handle,
            }),
            Err(e) => {
                hub.handshaking.fetch_sub(1, Ordering::Relaxed);
                log::error!("{peer}: cannot start a thread: {e}");
            }
        }
    }
    connections
}

/// Waits until the listener has a connection to accept, or the timeout passes.
fn wait_readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && fds.revents & libc::POLLIN != 0
}

/// What the first bytes of a connection say it is.
#[derive(Clone, Copy)]
enum Speaks {
    Native,
    /// A framed secure hello (a length, then `LSEC`).
    Secure,
    Http,
}

/// Waits (until `deadline`) for the first bytes and tells HTTP (a method name and
/// a space: `GET `) from the wire protocol, both served on one port. Anything
/// else goes to the native handshake, which rejects it with a reason.
fn sniff(stream: &TcpStream, deadline: Instant) -> Speaks {
    let mut first = [0u8; 8];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Speaks::Native;
        }
        let n = match stream.peek(&mut first) {
            Ok(n) => n,
            Err(_) => return Speaks::Native,
        };
        let letters = first[..n]
            .iter()
            .take_while(|b| b.is_ascii_uppercase())
            .count();
        if n >= 6 && first[2..6] == crate::secure::MAGIC {
            return Speaks::Secure;
        }
        // A secure hello starts with its length; wait for the magic after it.
        if n > 0 && n < 6 && (n < 2 || first[2..n] == crate::secure::MAGIC[..n - 2]) && letters == 0
        {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if letters < n {
            // A method of 3 to 7 letters, then a space.
            return if (3..=7).contains(&letters) && first[letters] == b' ' {
                Speaks::Http
            } else {
                Speaks::Native
            };
        }
        if n == 0 || n == first.len() || first[..n.min(4)] == protocol::MAGIC[..n.min(4)] {
            return Speaks::Native;
        }
        // Only letters so far: wait for the rest of the method name.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One connection: native viewer or HTTP client. Every failure ends this
/// connection only.
fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    stop: &AtomicBool,
    handshake_timeout: Duration,
) {
    connection(&stream, peer, hub, stop, Instant::now() + handshake_timeout);
    // The accept thread holds a second handle to this socket (to cut it off at
    // shutdown): dropping ours would not close it, so close it explicitly.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn connection(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    stop: &AtomicBool,
    deadline: Instant,
) {
    let speaks = sniff(stream, deadline);
    if let (Speaks::Http, true) = (speaks, hub.http) {
        crate::server::http::serve(stream, peer, hub, stop, deadline, &hub.handshaking);
        return;
    }
    let prepared = stream.set_nodelay(true).and_then(|_| {
        stream.set_write_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
    });
    if let Err(e) = prepared {
        log::debug!("viewer {peer}: {e}");
        return hub_done_handshaking(hub);
    }
    let secured = match (speaks, &hub.auth) {
        (Speaks::Secure, Some(auth)) => match auth.accept(stream, peer, deadline) {
            Ok(Some(a)) => Some(a),
            Ok(None) => return hub_done_handshaking(hub),
            Err(e) => {
                log::warn!("viewer {peer} rejected in the secure handshake: {e}");
                return hub_done_handshaking(hub);
            }
        },
        (Speaks::Secure, None) => {
            if let Err(e) = crate::secure::ServerAuth::refuse_plaintext_only(stream, deadline) {
                log::debug!("viewer {peer}: {e}");
            }
            log::warn!(
                "viewer {peer} refused: it wants encryption, and this server has auth = \"none\""
            );
            return hub_done_handshaking(hub);
        }
        (_, Some(_)) => {
            refuse_plaintext(stream, peer, deadline);
            return hub_done_handshaking(hub);
        }
        (_, None) => None,
    };
    let (mut tx, rx, secured) = match secured {
        Some(a) => (
            Tx::Sealed(SealWriter::new(stream, a.link.tx)),
            Some(OpenReader::new(
                DeadlineReader { stream, deadline },
                a.link.rx,
            )),
            Some((a.viewer_name, a.viewer_key, a.cipher)),
        ),
        None => (Tx::Plain(stream), None, None),
    };
    let viewer = match rx {
        Some(mut rx) => handshake(&mut rx, &mut tx, stream, peer, hub)
            .map(|v| v.map(|v| (v, Rx::Opened(rx.with_inner(stream))))),
        None => handshake(
            &mut DeadlineReader { stream, deadline },
            &mut tx,
            stream,
            peer,
            hub,
        )
        .map(|v| {
            v.map(|v| {
                (
                    v,
                    Rx::Plain(std::io::BufReader::with_capacity(1024, stream)),
                )
            })
        }),
    };
    hub.handshaking.fetch_sub(1, Ordering::Relaxed);
    let (viewer, rx) = match viewer {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            log::warn!("viewer {peer} rejected: {e}");
            return;
        }
    };
    if let Some((name, key, cipher)) = &secured {
        log::info!(
            "viewer {peer} is \"{name}\" (key {}), encrypted with {cipher}",
            crate::secure::trust::fingerprint(key),
        );
    }
    let reason = std::thread::scope(|scope| {
        let upstream = std::thread::Builder::new()
            .name("viewer-rx".into())
            .spawn_scoped(scope, || upstream_loop(stream, rx, &viewer));
        if let Err(e) = &upstream {
            log::warn!("viewer {peer}: no thread for its pings ({e}): clock sync off");
        }
        let reason = send_loop(
            stream,
            tx,
            &viewer,
            hub,
            stop,
            |w, packet, gap| native_frame(w, packet, gap, &viewer),
            |w| native_pongs(w, &viewer),
            native_end,
        );
        // Ends the upstream reader, which the scope then joins.
        let _ = stream.shutdown(std::net::Shutdown::Read);
        reason
    });
    hub.leave(&hub.main, &viewer);
    log_departure(&viewer, &reason);
}

fn hub_done_handshaking(hub: &Hub) {
    hub.handshaking.fetch_sub(1, Ordering::Relaxed);
}

/// A plaintext viewer at a server with pairing: told why, in its own protocol.
fn refuse_plaintext(stream: &TcpStream, peer: SocketAddr, deadline: Instant) {
    let msg = "this server requires pairing and encryption: connect with `livestream view ADDRESS \
               --pair CODE` (the code serve printed), not with auth = \"none\"";
    let result = ClientHello::read(&mut DeadlineReader { stream, deadline }).and_then(|_| {
        Ok(ServerHello::refusal(Status::Unauthorized, msg.into()).write(&mut &*stream)?)
    });
    match result {
        Ok(()) => log::warn!(
            "viewer {peer} refused: it speaks plaintext, and this server requires pairing"
        ),
        Err(e) => log::warn!("viewer {peer} rejected: {e}"),
    }
}

/// Reads what a native viewer sends after the handshake: pings (answered by the
/// sender with a pong) and latency reports. A viewer that breaks the protocol is
/// disconnected.
fn upstream_loop(stream: &TcpStream, mut r: Rx<&TcpStream>, viewer: &Viewer) {
    let _ = stream.set_read_timeout(None);
    loop {
        match protocol::read_upstream(&mut r) {
            Ok(protocol::Upstream::Ping { id, t1 }) => {
                let t2 = crate::media::clock::now_us();
                let mut pings = viewer
                    .upstream
                    .pings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if pings.len() >= MAX_PENDING_PINGS {
                    pings.pop_front();
                }
                pings.push_back((id, t1, t2));
            }
            Ok(protocol::Upstream::Report(report)) => {
                *viewer
                    .upstream
                    .report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(report);
            }
            // A sealed record that does not open: altered or replayed in transit.
            Err(protocol::ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                log::warn!("viewer {}: {e}; disconnecting it", viewer.peer);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            Err(protocol::ProtocolError::Closed(_)) | Err(protocol::ProtocolError::Io(_)) => {
                // The viewer went away, or the sender is done with it.
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            Err(e) => {
                log::warn!("viewer {}: {e}; disconnecting it", viewer.peer);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// Pings answered per write at most; older ones are dropped (a viewer pings once
/// a second).
const MAX_PENDING_PINGS: usize = 4;

/// The pongs for the pings waiting, stamped now, into `buf`; returns the bytes.
fn pongs(viewer: &Viewer, buf: &mut [u8; MAX_PENDING_PINGS * 40]) -> usize {
    let mut pings = viewer
        .upstream
        .pings
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    let t3 = crate::media::clock::now_us();
    while let Some((id, t1, t2)) = pings.pop_front() {
        buf[n..n + 40].copy_from_slice(&protocol::pong(id, t1, t2, t3));
        n += 40;
    }
    n
}

/// Sends the pongs waiting, between frames.
fn native_pongs(w: &mut impl Write, viewer: &Viewer) -> std::io::Result<()> {
    let mut buf = [0u8; MAX_PENDING_PINGS * 40];
    let n = pongs(viewer, &mut buf);
    if n > 0 {
        w.write_all(&buf[..n])?;
    }
    Ok(())
}

pub(crate) fn log_departure(viewer: &Viewer, reason: &str) {
    let c = &viewer.counters;
    log::info!(
        "{} viewer {} left: {reason}; sent {} frames ({:.1} MB), dropped {}",
        match viewer.protocol {
            Protocol::Http => "HTTP",
            _ => "native",
        },
        viewer.peer,
        c.sent.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        c.dropped.load(Ordering::Relaxed)
    );
}

/// Returns the registered viewer, `None` when it was refused politely.
fn handshake(
    r: &mut impl Read,
    w: &mut impl Write,
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
) -> Result<Option<Arc<Viewer>>, protocol::ProtocolError> {
    let hello = ClientHello::read(r)?;
    if hello.version < protocol::VERSION {
        let msg = format!(
            "this server speaks protocol {}, the viewer {}",
            protocol::VERSION,
            hello.version
        );
        ServerHello::refusal(Status::Version, msg.clone()).write(w)?;
        log::warn!("viewer {peer} refused: {msg}");
        return Ok(None);
    }
    let viewer = Viewer::new(peer, Protocol::Native);
    if let Err((status, msg)) = hub.admit(&hub.main, &viewer) {
        ServerHello::refusal(status, msg.clone()).write(w)?;
        log::warn!("viewer {peer} refused: {msg}");
        return Ok(None);
    }
    let hello = ServerHello {
        status: Status::Ok,
        codec: hub.codec.clone(),
        frame: hub.stream.frame,
        fps: hub.stream.fps,
        max_payload: hub.max_payload,
        server_time_us: crate::media::clock::now_us(),
        message: hub.name.clone(),
    };
    if let Err(e) = hello.write(w) {
        hub.leave(&hub.main, &viewer);
        return Err(e.into());
    }
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    log::info!("viewer {peer} connected ({} watching)", hub.watchers());
    Ok(Some(viewer))
}

/// Writes one frame in the wire protocol, after the pongs waiting and the frame's
/// timing packet, in one `writev`; returns the bytes written.
fn native_frame(
    w: &mut impl Write,
    packet: &Packet,
    dropped_before: bool,
    viewer: &Viewer,
) -> std::io::Result<usize> {
    let mut pong_buf = [0u8; MAX_PENDING_PINGS * 40];
    let pong_len = pongs(viewer, &mut pong_buf);
    let timing = protocol::timing(
        packet.frame.seq,
        packet.encoded_us,
        crate::media::clock::now_us(),
    );
    let payload = packet.payload();
    let header = PacketHeader {
        kind: protocol::PACKET_FRAME,
        flags: if dropped_before {
            protocol::FLAG_DROPPED_BEFORE
        } else {
            0
        },
        len: payload.len() as u32,
        seq: packet.frame.seq,
        capture_us: packet.frame.capture_us,
    };
    let head = header.encode();
    crate::net::io::write_all_vectored(
        w,
        &mut [
            std::io::IoSlice::new(&pong_buf[..pong_len]),
            std::io::IoSlice::new(&timing),
            std::io::IoSlice::new(&head),
            std::io::IoSlice::new(payload),
        ],
    )?;
    Ok(pong_len + timing.len() + head.len() + payload.len())
}

fn native_end(w: &mut impl Write, why: &str, final_: bool) {
    let _ = protocol::write_end(w, why, final_).and_then(|_| w.flush());
}

/// At most this much written but not yet sent stays in a viewer's socket.
const NOTSENT_LOWAT: libc::c_int = 128 << 10;

fn set_notsent_lowat(stream: &TcpStream) {
    let v = NOTSENT_LOWAT;
    // SAFETY: setsockopt on an open socket with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("TCP_NOTSENT_LOWAT: {}", std::io::Error::last_os_error());
    }
}

/// Waits until the socket takes more (its unsent data is under the low-water
/// mark). Meanwhile a newer frame replaces `packet`, which counts as dropped for
/// this viewer. Gives up after the write timeout.
fn wait_writable(
    stream: &TcpStream,
    viewer: &Viewer,
    packet: &mut Arc<Packet>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let mut p = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 20) };
        if n > 0 {
            return Ok(()); // writable, or an error the write will report
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll failed: {e}"));
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() >= WRITE_TIMEOUT {
            return Err(format!(
                "write timed out after {} s",
                WRITE_TIMEOUT.as_secs()
            ));
        }
        if let Taken::Value(newer) = viewer.slot.take(Duration::ZERO) {
            viewer.counters.dropped.fetch_add(1, Ordering::Relaxed);
            *packet = newer;
        }
    }
}

/// Sends the newest packet of the viewer's slot, framed by `frame`, until the
/// viewer goes away or the stream ends (then `end` says goodbye); returns why.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_loop<W>(
    stream: &TcpStream,
    mut w: W,
    viewer: &Viewer,
    hub: &Hub,
    stop: &AtomicBool,
    mut frame: impl FnMut(&mut W, &Packet, bool) -> std::io::Result<usize>,
    mut idle: impl FnMut(&mut W) -> std::io::Result<()>,
    end: impl FnOnce(&mut W, &str, bool),
) -> String {
    let mut last_seq: Option<u64> = None;
    // Unsent data in the kernel is latency: let it hold little, so that when the
    // link is slower than the stream, frames wait in the newest-wins slot (and are
    // dropped there) instead of queueing in the socket.
    set_notsent_lowat(stream);
    loop {
        match viewer.slot.take(Duration::from_millis(100)) {
            Taken::Value(mut packet) => {
                if let Err(why) = wait_writable(stream, viewer, &mut packet, stop) {
                    return why;
                }
                let gap = last_seq.is_some_and(|s| packet.frame.seq != s + 1);
                match frame(&mut w, &packet, gap) {
                    Ok(bytes) => viewer.sent(&packet, bytes),
                    Err(e) => return format!("write failed: {e}"),
                }
                last_seq = Some(packet.frame.seq);
            }
            Taken::Timeout if !stop.load(Ordering::Relaxed) => {
                if let Err(e) = idle(&mut w) {
                    return format!("write failed: {e}");
                }
            }
            Taken::Timeout | Taken::Closed => {
                let (why, final_) = hub
                    .end_message()
                    .unwrap_or_else(|| ("the server is shutting down".into(), false));
                end(&mut w, &why, final_);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return why;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let mut l = RateLimit::new(10.0);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(a)).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        assert!(l.allow(b), "other addresses are not affected");
        std::thread::sleep(Duration::from_millis(300));
        let later = (0..100).filter(|_| l.allow(a)).count();
        assert!(
            (2..=4).contains(&later),
            "{later} after 0.3 s at 10 a second"
        );
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(lo)), "loopback is not limited");
        // The table stays bounded whatever the number of addresses.
        for i in 0..(RATE_TABLE as u32 + 100) {
            l.allow(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                0x0b00_0000 + i,
            )));
        }
        assert!(l.buckets.len() <= RATE_TABLE);
    }
}
