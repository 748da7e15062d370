//! `livestream serve`: capture once, encode once, send to every viewer.
//!
//! One file per kind of thread (each named, stoppable, joined; the picture is
//! in `docs/architecture.md`):
//!
//! | thread | file | job |
//! |--------|------|-----|
//! | `capture`, `encode-N` | `capture.rs` | source → codec → the main fan-out |
//! | `http-jpeg` | `transcode.rs` | JPEG for browsers when the payload is not JPEG, only while one watches |
//! | `webrtc-h264` | `transcode.rs` | H.264 for WebRTC viewers when the payload is not H.264, only while one watches |
//! | `rendition-Np` | `transcode.rs`, `adapt.rs` | a smaller rendition of an H.264 stream for native and WebRTC viewers whose link cannot carry it, only while one takes it |
//! | `mjpeg-Np` | `transcode.rs`, `adapt.rs` | a smaller, lower-quality JPEG rendition for MJPEG browsers whose link cannot carry the stream's, only while one takes it |
//! | `sink-NAME` | `local_sinks.rs` | a preview window or recording on the server |
//! | `accept` | `accept.rs` | takes connections, bounds the flood, starts a thread for each |
//! | `viewer-ADDR` | `connection.rs` → `native.rs`, `http.rs` or `rtsp.rs` | sniffs, shakes hands, then sends (`send.rs`) |
//! | `viewer-rx` | `native.rs` | a native viewer's pings and latency reports |
//! | `rtsp-rx` | `rtsp.rs` | a playing RTSP client's requests and RTCP |
//! | `rtsp-rtcp` | `rtsp.rs` | receiver reports on the RTSP UDP port |
//! | `publish`, `publish-rx` | `publish.rs` | `--publish`: the stream pushed to a media server, and what it says back |
//! | `webrtc` | `webrtc/` | every WebRTC (WHEP) session: one UDP socket, str0m driven sans-IO |
//!
//! What they share is in `hub.rs`; `stats.rs` and `metrics.rs` read it. This
//! file starts the threads in order and owns every one of them from the first
//! spawn ([`Threads`]), so a failed start or a stop joins them all.
//!
//! A viewer's slot holds one frame: a viewer that cannot keep up loses frames
//! for itself only, and capture never waits for anyone.

mod accept;
mod adapt;
mod capture;
mod connection;
mod http;
pub(crate) mod hub;
pub(crate) mod link;
mod local_sinks;
pub mod metrics;
mod native;
mod publish;
mod rtsp;
mod send;
pub mod stats;
mod transcode;
// WebRTC for browsers (str0m): compiled in with the `webrtc` feature; without
// it, `/whep` says how to get it.
#[cfg(feature = "webrtc")]
pub mod webrtc;
#[cfg(not(feature = "webrtc"))]
#[path = "webrtc_off.rs"]
mod webrtc;
mod whep;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{Availability, Kind};
use crate::codecs::FrameCodec;
use crate::config::Config;
use crate::error::{BackendError, CodecError, SourceError};
use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};
use crate::net::discovery::{Advertiser, Announcement};
use crate::registry;
use crate::secure::{SecureError, ServerAuth};
use crate::sources::FrameSource;

use accept::{AcceptSetup, Connection};
use hub::{Hub, HubSetup};
pub use stats::{CaptureTotals, LocalSinkStats, ReportedLatency, ServerStats, ViewerStats};

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
    #[error("local sink {name}: {source}")]
    LocalSink {
        name: String,
        #[source]
        source: Box<local_sinks::LocalSinkError>,
    },
    #[error(transparent)]
    Secure(#[from] SecureError),
    #[error("cannot publish: {0}")]
    Publish(String),
    /// `[serve] webrtc-networks` keeps none of the machine's addresses and
    /// `webrtc-candidates` adds none: no browser could reach WebRTC.
    #[error(
        "no WebRTC candidate: [serve] webrtc-networks ({networks}) keeps none of this \
         machine's addresses ({machine}) and webrtc-candidates adds none; widen the \
         networks or add a candidate"
    )]
    NoWebrtcCandidate { machine: String, networks: String },
    #[error("codec {codec} cannot carry this stream: {source}")]
    Codec {
        codec: String,
        #[source]
        source: crate::error::CodecError,
    },
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

/// Capture on demand (`[serve] capture`, by default for a camera): the
/// source is closed now unless a local sink watches from the start (its
/// stream info stays, for the codecs and the hellos), and a way to open it
/// again as it was opened.
fn on_demand(
    cfg: &Config,
    source: Box<dyn FrameSource>,
    hub: &Hub,
) -> (Option<Box<dyn FrameSource>>, Option<capture::OnDemand>) {
    let camera = crate::sources::cameras()
        .iter()
        .any(|b| b.name == hub.source_name);
    let wanted = match cfg.serve.capture {
        crate::config::CaptureMode::Always => false,
        crate::config::CaptureMode::OnDemand => true,
        crate::config::CaptureMode::Auto => camera,
    };
    if !wanted {
        return (Some(source), None);
    }
    let local_sinks = !cfg.serve.sinks.is_empty();
    let (cfg, name) = (cfg.clone(), hub.source_name.clone());
    let reopen: capture::Reopen = Box::new(move || {
        let backend = registry::source(&name).map_err(|e| e.to_string())?;
        (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, &name)).map_err(|e| e.to_string())
    });
    let on_demand = capture::OnDemand::new(reopen, &*source);
    if local_sinks {
        return (Some(source), Some(on_demand));
    }
    drop(source);
    hub.source_open.store(false, Ordering::Relaxed);
    log::info!("the source opens when the first viewer connects (capture = on demand)");
    (None, Some(on_demand))
}

/// When to stop capturing by itself (for tests and benchmarks); default: never.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeLimits {
    pub frames: Option<u64>,
    pub duration: Option<Duration>,
}

/// Every thread of a running server, owned from the first spawn: dropping it
/// (a failed start, or [`RunningServer::stop`]) stops and joins them all, in an
/// order that lets each say goodbye.
struct Threads {
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    /// `sink-NAME` threads.
    locals: Vec<JoinHandle<()>>,
    capture: Option<JoinHandle<Result<(), SourceError>>>,
    transcoder: Option<JoinHandle<()>>,
    rtcp: Option<JoinHandle<()>>,
    publish: Option<JoinHandle<()>>,
    /// The `webrtc` thread, when WebRTC runs.
    webrtc: Option<JoinHandle<()>>,
    /// H.264 for WebRTC viewers when the payload is not H.264.
    webrtc_h264: Option<JoinHandle<()>>,
    /// `rendition-N`: the smaller renditions of the ladder.
    renditions: Vec<JoinHandle<()>>,
    accept: Option<JoinHandle<Vec<Connection>>>,
}

impl Threads {
    fn new(hub: &Arc<Hub>) -> Threads {
        Threads {
            hub: hub.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            locals: Vec::new(),
            capture: None,
            transcoder: None,
            rtcp: None,
            publish: None,
            webrtc: None,
            webrtc_h264: None,
            renditions: Vec::new(),
            accept: None,
        }
    }

    /// Starts `f` on a thread named `name`, with the hub and the stop flag.
    fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(&Arc<Hub>, &Arc<AtomicBool>) -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, ServeError> {
        let (hub, stop) = (self.hub.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(&hub, &stop))
            .map_err(ServeError::Thread)
    }

    /// Stops and joins every thread; the capture thread's result.
    fn join(&mut self) -> Result<(), SourceError> {
        self.stop.store(true, Ordering::SeqCst);
        let captured = self.capture.take().map(|c| c.join());
        // Every slot closes: viewers send their end packet, sinks finish.
        self.hub.finish("the server is shutting down", false);
        if let Some(t) = self.transcoder.take() {
            let _ = t.join();
        }
        if let Some(t) = self.webrtc_h264.take() {
            let _ = t.join();
        }
        for t in self.renditions.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.rtcp.take() {
            let _ = t.join();
        }
        if let Some(t) = self.publish.take() {
            let _ = t.join();
        }
        for t in self.locals.drain(..) {
            let _ = t.join();
        }
        // It sees the stop flag within its longest wait (0.1 s) and ends every
        // session with a goodbye to its browser.
        if let Some(t) = self.webrtc.take() {
            let _ = t.join();
        }
        let connections = self
            .accept
            .take()
            .and_then(|a| a.join().ok())
            .unwrap_or_default();
        close_connections(connections);
        match captured {
            Some(Ok(Err(e))) => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Connections get a moment to send their end packet; any still stuck (a write
/// to a stalled viewer, a handshake not yet done) is cut off, then all joined.
fn close_connections(connections: Vec<Connection>) {
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
}

/// A running server: its threads run until [`RunningServer::stop`] or drop.
pub struct RunningServer {
    addr: SocketAddr,
    /// `[serve] rtsp-listen`'s port, once bound.
    rtsp_addr: Option<SocketAddr>,
    hub: Arc<Hub>,
    /// The mDNS announcement, while it lasts (gone before the threads stop).
    advertiser: Option<Advertiser>,
    threads: Threads,
}

/// The codec instances for the capture thread (one per encoder thread) and
/// what they say about the stream.
struct Codecs {
    encoders: Vec<Box<dyn FrameCodec>>,
    max_payload: u32,
    payload_format: Option<PixelFormat>,
    /// What the encoder was set up to do, for people.
    settings: String,
    /// The JPEG encoder for browsers, used only while one watches.
    transcoder: Option<Box<dyn FrameCodec>>,
    /// The H.264 encoder for WebRTC viewers when the payload is not H.264,
    /// used only while one watches.
    webrtc_h264: Option<Box<dyn FrameCodec>>,
    /// The ladder of renditions (one rung when the stream does not adapt),
    /// and an encoder for each rung below the stream, used only while some
    /// viewer takes it.
    ladder: Vec<adapt::Rung>,
    renditions: Vec<Box<dyn FrameCodec>>,
    /// The same for MJPEG browsers.
    jpeg_ladder: Vec<adapt::Rung>,
    jpeg_renditions: Vec<Box<dyn FrameCodec>>,
}

fn open_codecs(cfg: &Config, stream: &StreamInfo) -> Result<Codecs, ServeError> {
    let backend = registry::codec(&cfg.serve.codec)?;
    let n = match cfg.serve.encode_threads {
        0 if backend.parallel => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        0 => 1,
        n => n,
    };
    let open = || (backend.open)(&cfg.backend(Kind::Codec, &cfg.serve.codec));
    let mut encoders = vec![open()?];
    let inter_frame = encoders[0].inter_frame();
    if stream.frame.format == PixelFormat::H264 && !inter_frame {
        // Its frames depend on each other: a codec that may drop any frame
        // would hand viewers broken chains.
        return Err(ServeError::Codec {
            codec: cfg.serve.codec.clone(),
            source: CodecError::Stream {
                codec: "it",
                what: "H.264 frames, which depend on each other (codec `h264` or `auto` \
                       passes them through)"
                    .into(),
            },
        });
    }
    if inter_frame && n > 1 {
        // Each frame depends on the one before: one encoder makes the chain
        // (it may use threads of its own).
        log::info!(
            "codec {}: one encoder (encode-threads = {n} applies to intra-only codecs)",
            cfg.serve.codec
        );
    } else {
        for _ in 1..n {
            encoders.push(open()?);
        }
    }
    for e in &mut encoders {
        e.begin(stream).map_err(|source| ServeError::Codec {
            codec: cfg.serve.codec.clone(),
            source,
        })?;
    }
    let max_payload = encoders[0]
        .max_payload(&stream.frame)
        .min(u32::MAX as usize) as u32;
    let payload_format = encoders[0].payload_format(&stream.frame);
    let transcoder = if payload_format == Some(PixelFormat::Jpeg) || !cfg.serve.http {
        None
    } else {
        Some((registry::codec("jpeg")?.open)(
            &cfg.backend(Kind::Codec, "jpeg"),
        )?)
    };
    let webrtc_h264 = if payload_format == Some(PixelFormat::H264) || !cfg.serve.http {
        None
    } else {
        open_webrtc_h264(cfg, stream)?
    };
    let (ladder, renditions) = open_renditions(cfg, stream, payload_format, &*encoders[0]);
    let (jpeg_ladder, jpeg_renditions) = open_jpeg_renditions(cfg, stream);
    Ok(Codecs {
        settings: encoders[0].settings(),
        encoders,
        max_payload,
        payload_format,
        transcoder,
        webrtc_h264,
        ladder,
        renditions,
        jpeg_ladder,
        jpeg_renditions,
    })
}

/// The ladder for MJPEG browsers with `adapt = "auto"` and HTTP on, and a
/// JPEG encoder for each rung below the stream's JPEG (the `http-jpeg`
/// transcoder's, of its configured quality; an MJPEG camera's own is taken
/// to be of 80). Each rung below is scaled from the captured picture.
fn open_jpeg_renditions(
    cfg: &Config,
    stream: &StreamInfo,
) -> (Vec<adapt::Rung>, Vec<Box<dyn FrameCodec>>) {
    let top_quality = crate::codecs::jpeg::configured_quality(&cfg.backend(Kind::Codec, "jpeg"));
    let mut ladder = adapt::jpeg_ladder(&stream.frame, stream.fps, top_quality);
    if cfg.serve.adapt == crate::config::Adapt::Off || !cfg.serve.http {
        ladder.truncate(1);
        return (ladder, Vec::new());
    }
    let mut codecs: Vec<Box<dyn FrameCodec>> = Vec::new();
    for i in 1..ladder.len() {
        match crate::codecs::jpeg::JpegCodec::with_quality(adapt::JPEG_RENDITION_QUALITY) {
            Ok(codec) => codecs.push(Box::new(codec)),
            Err(e) => {
                log::warn!("adapt: no JPEG encoder ({e}): no JPEG renditions");
                ladder.truncate(i);
                break;
            }
        }
    }
    (ladder, codecs)
}

/// The ladder of an H.264 stream with `adapt = "auto"`, and an encoder begun
/// for each rung below the stream. A rung whose encoder cannot be had ends
/// the ladder above it (said once); no ladder is no error: every viewer then
/// gets the stream.
fn open_renditions(
    cfg: &Config,
    stream: &StreamInfo,
    payload_format: Option<PixelFormat>,
    main: &dyn FrameCodec,
) -> (Vec<adapt::Rung>, Vec<Box<dyn FrameCodec>>) {
    let top = adapt::Rung {
        width: stream.frame.width,
        height: stream.frame.height,
        bits_per_second: 0,
    };
    if cfg.serve.adapt == crate::config::Adapt::Off || payload_format != Some(PixelFormat::H264) {
        return (vec![top], Vec::new());
    }
    let Ok(backend) = registry::codec("h264") else {
        return (vec![top], Vec::new());
    };
    let top_bps = main
        .target_bitrate()
        .unwrap_or_else(|| adapt::assumed_bitrate(stream));
    let mut ladder = adapt::ladder(&stream.frame, top_bps);
    let mut codecs = Vec::new();
    for (i, rung) in ladder.iter().enumerate().skip(1) {
        let opened = (backend.open)(&cfg.backend(Kind::Codec, "h264"))
            .map_err(|e| e.to_string())
            .and_then(|mut codec| {
                codec.set_bitrate(rung.bits_per_second);
                let pictures = StreamInfo {
                    frame: FrameInfo::packed(PixelFormat::I420, rung.width, rung.height)
                        .map_err(|e| e.to_string())?,
                    fps: stream.fps,
                };
                codec.begin(&pictures).map_err(|e| e.to_string())?;
                Ok(codec)
            });
        match opened {
            Ok(codec) => codecs.push(codec),
            Err(e) => {
                log::warn!(
                    "adapt: no encoder for {}x{} ({e}): no renditions from there down",
                    rung.width,
                    rung.height
                );
                ladder.truncate(i);
                break;
            }
        }
    }
    (ladder, codecs)
}

/// The H.264 encoder for WebRTC viewers of a stream whose payload is not
/// H.264, begun for the pictures it will get (an MJPEG camera's decoded).
/// `None` in a build without WebRTC or H.264 (`/whep` then says why).
fn open_webrtc_h264(
    cfg: &Config,
    stream: &StreamInfo,
) -> Result<Option<Box<dyn FrameCodec>>, ServeError> {
    if !cfg!(feature = "webrtc") {
        return Ok(None);
    }
    let Ok(backend) = registry::codec("h264") else {
        return Ok(None);
    };
    let mut codec = (backend.open)(&cfg.backend(Kind::Codec, "h264"))?;
    let mut pictures = *stream;
    if stream.frame.format.is_compressed() {
        match crate::codecs::to_pixels::for_format(stream.frame.format)? {
            Some(decoder) => pictures.frame = decoder.decoded_info(&stream.frame),
            None => return Ok(None),
        }
    }
    codec.begin(&pictures).map_err(|source| ServeError::Codec {
        codec: "h264 (for WebRTC)".into(),
        source,
    })?;
    Ok(Some(codec))
}

/// Pairing and encryption, unless `auth = "none"`.
fn open_auth(cfg: &Config) -> Result<Option<Arc<ServerAuth>>, ServeError> {
    match cfg.serve.auth {
        crate::config::Auth::Pair => {
            let dir = match &cfg.serve.key_dir {
                Some(d) => d.clone(),
                None => crate::secure::trust::default_dir().map_err(SecureError::from)?,
            };
            Ok(Some(Arc::new(ServerAuth::open(&dir, &cfg.serve.name)?)))
        }
        crate::config::Auth::None => Ok(None),
    }
}

/// `[serve] rtsp-listen`: a second port for the same connections, for RTSP
/// clients that expect 554 or 8554.
fn bind_rtsp(cfg: &Config) -> Result<(Option<TcpListener>, Option<SocketAddr>), ServeError> {
    let Some(at) = cfg.serve.rtsp_listen.as_deref().filter(|_| cfg.serve.rtsp) else {
        return Ok((None, None));
    };
    let failed = |source| ServeError::Listen {
        addr: format!("{at} (rtsp-listen)"),
        source,
    };
    let listener = TcpListener::bind(at).map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok((Some(listener), Some(addr)))
}

fn bind(cfg: &Config) -> Result<(TcpListener, SocketAddr), ServeError> {
    let failed = |source| ServeError::Listen {
        addr: cfg.serve.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&cfg.serve.listen).map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok((listener, addr))
}

/// RTSP on the server's port when `[serve] rtsp` is on (for a stream RTSP
/// does not carry, DESCRIBE says why), with the UDP pair for clients that
/// want RTP over UDP when the stream is H.264 or JPEG.
fn open_rtsp(
    cfg: &Config,
    addr: SocketAddr,
    payload_format: Option<PixelFormat>,
) -> Result<Option<rtsp::RtspShared>, ServeError> {
    if !cfg.serve.rtsp {
        return Ok(None);
    }
    let udp = if matches!(payload_format, Some(PixelFormat::H264 | PixelFormat::Jpeg)) {
        let port = cfg.serve.rtsp_udp_port;
        Some(
            rtsp::RtspUdp::bind(addr.ip(), port).map_err(|source| ServeError::Listen {
                addr: format!("{}:{port} (UDP, for RTSP)", addr.ip()),
                source,
            })?,
        )
    } else {
        None
    };
    Ok(Some(rtsp::RtspShared::new(
        udp,
        cfg.serve.rtsp_session_timeout,
    )))
}

/// Announces the server with mDNS, if configured; a convenience, so a failure
/// is only said.
fn advertise(cfg: &Config, hub: &Hub, addr: SocketAddr) -> Option<Advertiser> {
    if !cfg.serve.discovery {
        return None;
    }
    let what = Announcement {
        name: cfg.serve.name.clone(),
        codec: cfg.serve.codec.clone(),
        size: format!("{}x{}", hub.stream.frame.width, hub.stream.frame.height),
        pairing: if hub.auth.is_some() {
            "required"
        } else {
            "none"
        }
        .into(),
        key: hub.auth.as_ref().map(|a| a.fingerprint()),
    };
    match Advertiser::start(addr, &what) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("not announced on the network: {e}");
            None
        }
    }
}

impl RunningServer {
    /// Opens the source and codec, binds, and starts the threads.
    pub fn start(cfg: &Config, limits: ServeLimits) -> Result<RunningServer, ServeError> {
        let (source, source_name) = open_source(cfg)?;
        let stream = source.stream_info();
        let codecs = open_codecs(cfg, &stream)?;
        let auth = open_auth(cfg)?;
        let (listener, addr) = bind(cfg)?;
        let (rtsp_listener, rtsp_addr) = bind_rtsp(cfg)?;
        let rtsp = open_rtsp(cfg, addr, codecs.payload_format)?;
        let hub = Arc::new(Hub::new(HubSetup {
            payload_format: codecs.payload_format,
            max_viewers: cfg.serve.max_viewers,
            http: cfg.serve.http,
            stream,
            codec: cfg.serve.codec.clone(),
            codec_settings: codecs.settings.clone(),
            max_payload: codecs.max_payload,
            name: cfg.serve.name.clone(),
            source_name,
            auth,
            rtsp,
            ladder: codecs.ladder,
            jpeg_ladder: codecs.jpeg_ladder,
        }));
        // The stream's encoder can follow its viewers' links (a running
        // encoder with rate control; the capture thread finds out whether
        // its engine changes rate at run time, and says so here).
        hub.top_follows.store(
            codecs.encoders[0].target_bitrate().is_some(),
            Ordering::Relaxed,
        );
        let mut threads = Threads::new(&hub);
        // Local sinks first, so a recording holds every frame from the first.
        // On any error below, dropping `threads` stops and joins them all.
        for name in &cfg.serve.sinks {
            local_sinks::start(name, cfg, &hub, &threads.stop, &mut threads.locals)?;
        }
        let encoders = codecs.encoders;
        let (source, on_demand) = on_demand(cfg, source, &hub);
        threads.capture = Some(threads.spawn("capture", move |hub, stop| {
            capture::capture_loop(source, on_demand, encoders, hub, stop, limits)
        })?);
        if let Some(codec) = codecs.transcoder {
            threads.transcoder = Some(threads.spawn("http-jpeg", move |hub, stop| {
                transcode::transcode_loop(codec, transcode::Output::Jpeg, hub, stop)
            })?);
        }
        if let Some(codec) = codecs.webrtc_h264 {
            threads.webrtc_h264 = Some(threads.spawn("webrtc-h264", move |hub, stop| {
                transcode::transcode_loop(codec, transcode::Output::H264, hub, stop)
            })?);
        }
        for (i, codec) in codecs.renditions.into_iter().enumerate() {
            let index = (i + 1) as u8;
            let name = format!("rendition-{}p", hub.ladder[i + 1].height);
            threads
                .renditions
                .push(threads.spawn(&name, move |hub, stop| {
                    transcode::transcode_loop(codec, transcode::Output::Rendition(index), hub, stop)
                })?);
        }
        for (i, codec) in codecs.jpeg_renditions.into_iter().enumerate() {
            let index = (i + 1) as u8;
            let name = format!("mjpeg-{}p", hub.jpeg_ladder[i + 1].height);
            let output = transcode::Output::JpegRendition(index);
            threads
                .renditions
                .push(threads.spawn(&name, move |hub, stop| {
                    transcode::transcode_loop(codec, output, hub, stop)
                })?);
        }
        if hub.rtsp.as_ref().is_some_and(|r| r.udp.is_some()) {
            threads.rtcp = Some(threads.spawn("rtsp-rtcp", |hub, stop| {
                if let Some(udp) = hub.rtsp.as_ref().and_then(|r| r.udp.as_ref()) {
                    rtsp::rtcp_loop(udp, stop);
                }
            })?);
        }
        if let Some(url) = &cfg.serve.publish {
            let target =
                publish::Target::parse(url).map_err(|e| ServeError::Publish(e.to_string()))?;
            threads.publish = Some(threads.spawn("publish", move |hub, stop| {
                publish::publish_loop(target, hub, stop)
            })?);
        }
        webrtc::start(cfg, addr, &mut threads)?;
        let advertiser = advertise(cfg, &hub, addr);
        let setup = AcceptSetup {
            listener,
            second: rtsp_listener,
            handshake_timeout: cfg.serve.handshake_timeout,
            connections_per_second: cfg.serve.connections_per_second,
        };
        threads.accept = Some(threads.spawn("accept", move |hub, stop| {
            accept::accept_loop(setup, hub, stop)
        })?);
        Ok(RunningServer {
            addr,
            rtsp_addr,
            hub,
            advertiser,
            threads,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// RTSP clients can play the stream here (`[serve] rtsp`, an H.264 or
    /// JPEG stream).
    pub fn serves_rtsp(&self) -> bool {
        self.hub.rtsp.is_some()
            && matches!(
                self.hub.payload_format,
                Some(PixelFormat::H264 | PixelFormat::Jpeg)
            )
    }

    /// The second port (`[serve] rtsp-listen`), if any.
    pub fn rtsp_listen_addr(&self) -> Option<SocketAddr> {
        self.rtsp_addr
    }

    /// The UDP ports (RTP, RTCP) RTSP clients get the stream from, if any.
    pub fn rtsp_udp_ports(&self) -> Option<(u16, u16)> {
        self.hub
            .rtsp
            .as_ref()
            .and_then(|r| r.udp.as_ref())
            .map(|u| u.ports())
    }

    pub fn source_name(&self) -> &str {
        &self.hub.source_name
    }

    /// The codec's name and what it was set up to do ("h264 (2.8 Mbit/s, ...)").
    pub fn codec_summary(&self) -> String {
        if self.hub.codec_settings.is_empty() {
            self.hub.codec.clone()
        } else {
            format!("{} ({})", self.hub.codec, self.hub.codec_settings)
        }
    }

    pub fn stream_info(&self) -> StreamInfo {
        self.hub.stream
    }

    /// True once the source has ended (a finite recording, or the frame limit).
    pub fn finished(&self) -> bool {
        self.threads
            .capture
            .as_ref()
            .is_none_or(|c| c.is_finished())
    }

    pub fn frames_captured(&self) -> u64 {
        self.hub.captured.load(Ordering::Relaxed)
    }

    /// Frames captured and the time spent capturing and encoding them.
    pub fn capture_totals(&self) -> CaptureTotals {
        self.hub.capture_totals()
    }

    /// Pairing and encryption, unless `auth = "none"`.
    pub fn auth(&self) -> Option<&ServerAuth> {
        self.hub.auth.as_deref()
    }

    /// Everything `/stats` reports.
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
        // Gone from viewers' lists first.
        self.advertiser = None;
        let captured = self.threads.join();
        log::info!(
            "stopped after {} frames; served {} viewers",
            self.hub.captured.load(Ordering::Relaxed),
            self.hub.served.load(Ordering::Relaxed)
        );
        captured.map_err(ServeError::Source)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.threads.accept.is_some() {
            let _ = self.shutdown();
        }
    }
}
