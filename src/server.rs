//! `livestream serve`: capture once, encode once, send to every viewer.
//!
//! Threads (each named, stoppable, joined):
//! - `capture`: source → codec → a pooled, shared packet → every viewer's slot;
//! - `accept`: takes connections and starts a viewer thread for each;
//! - `viewer-ADDR`: handshake, then writes the newest packet of its slot.
//!
//! A viewer's slot holds one packet: a viewer that cannot keep up loses frames
//! for itself only, and capture never waits for anyone.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::codecs::{Encoded, FrameCodec};
use crate::config::Config;
use crate::error::{BackendError, SourceError};
use crate::frame::{Frame, StreamInfo};
use crate::protocol::{self, ClientHello, DeadlineReader, PacketHeader, ServerHello, Status};
use crate::registry::{self, Availability, Kind};
use crate::slot::{Slot, Taken};
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
}

/// One encoded frame, shared by every viewer that sends it. Recycled through a
/// pool: no allocation per frame once the pool has grown.
struct Packet {
    frame: Frame,
    encoded: Vec<u8>,
    passthrough: bool,
}

impl Packet {
    fn payload(&self) -> &[u8] {
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
}

struct Viewer {
    peer: SocketAddr,
    slot: Slot<Arc<Packet>>,
    counters: ViewerCounters,
    /// A handle to unblock a stuck write at shutdown.
    stream: TcpStream,
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

/// A snapshot of one viewer's counters.
#[derive(Debug, Clone)]
pub struct ViewerStats {
    pub peer: SocketAddr,
    pub sent: u64,
    pub dropped: u64,
    pub bytes: u64,
}

/// What capture and the viewers share.
struct Hub {
    viewers: Mutex<Vec<Arc<Viewer>>>,
    max_viewers: usize,
    handshaking: AtomicUsize,
    stream: StreamInfo,
    codec: String,
    max_payload: u32,
    name: String,
    captured: AtomicU64,
    served: AtomicU64,
    /// CPU time spent in the source and in the encoder, summed, ns.
    source_ns: AtomicU64,
    encode_ns: AtomicU64,
    /// Frames no encoder was free for, or finished after a newer one.
    encoder_dropped: AtomicU64,
    /// One past the newest published sequence number (under the viewers lock).
    next_seq: AtomicU64,
    /// Set when the stream is over: the end message, and whether it is final.
    end: Mutex<Option<(String, bool)>>,
}

impl Hub {
    fn viewers(&self) -> MutexGuard<'_, Vec<Arc<Viewer>>> {
        self.viewers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `packet` to every viewer, unless a newer frame went out already
    /// (parallel encoders can finish out of order).
    fn publish(&self, packet: &Arc<Packet>) {
        let viewers = self.viewers();
        let seq = packet.frame.seq;
        if self.next_seq.load(Ordering::Relaxed) > seq {
            self.encoder_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        for v in viewers.iter() {
            if v.slot.put(packet.clone()).is_some() {
                v.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends the stream for every viewer (now and later). `final_`: the source is
    /// done, viewers should not reconnect.
    fn finish(&self, why: &str, final_: bool) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        end.get_or_insert_with(|| (why.to_string(), final_));
        drop(end);
        for v in self.viewers().iter() {
            v.slot.close();
        }
    }

    fn end_message(&self) -> Option<(String, bool)> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running server: its threads run until [`RunningServer::stop`] or drop.
pub struct RunningServer {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
    capture: Option<JoinHandle<Result<(), SourceError>>>,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    source_name: String,
}

/// Opens the configured source, resolving `auto`.
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
    for backend in inventory::iter::<crate::sources::SourceBackend>
        .into_iter()
        .filter(|b| b.camera)
    {
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
            0 if codec_backend.parallel => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            0 => 1,
            n => n,
        };
        let codecs = (0..encoders)
            .map(|_| (codec_backend.new)(&cfg.backend(Kind::Codec, &cfg.serve.codec)))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = source.stream_info();
        let max_payload = codecs[0].max_payload(&stream.frame).min(u32::MAX as usize) as u32;

        let listener = TcpListener::bind(&cfg.serve.listen).map_err(|e| ServeError::Listen {
            addr: cfg.serve.listen.clone(),
            source: e,
        })?;
        let addr = listener.local_addr().map_err(|e| ServeError::Listen {
            addr: cfg.serve.listen.clone(),
            source: e,
        })?;
        let hub = Arc::new(Hub {
            viewers: Mutex::new(Vec::new()),
            max_viewers: cfg.serve.max_viewers,
            handshaking: AtomicUsize::new(0),
            stream,
            codec: cfg.serve.codec.clone(),
            max_payload,
            name: cfg.serve.name.clone(),
            captured: AtomicU64::new(0),
            served: AtomicU64::new(0),
            source_ns: AtomicU64::new(0),
            encode_ns: AtomicU64::new(0),
            encoder_dropped: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            end: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));

        let capture = {
            let (hub, stop) = (hub.clone(), stop.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture_loop(source, codecs, &hub, &stop, limits))
                .map_err(ServeError::Thread)?
        };
        let accept = {
            let (hub, stop) = (hub.clone(), stop.clone());
            let timeout = cfg.serve.handshake_timeout;
            std::thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(listener, &hub, &stop, timeout))
                .map_err(ServeError::Thread)?
        };
        Ok(RunningServer {
            addr,
            hub,
            stop,
            capture: Some(capture),
            accept: Some(accept),
            source_name,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
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
            encoder_dropped: self.hub.encoder_dropped.load(Ordering::Relaxed),
            source_ns: self.hub.source_ns.load(Ordering::Relaxed),
            encode_ns: self.hub.encode_ns.load(Ordering::Relaxed),
        }
    }

    pub fn viewer_stats(&self) -> Vec<ViewerStats> {
        self.hub
            .viewers()
            .iter()
            .map(|v| ViewerStats {
                peer: v.peer,
                sent: v.counters.sent.load(Ordering::Relaxed),
                dropped: v.counters.dropped.load(Ordering::Relaxed),
                bytes: v.counters.bytes.load(Ordering::Relaxed),
            })
            .collect()
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
        let captured = self.capture.take().map(|c| c.join());
        self.hub.finish("the server is shutting down", false);
        let viewers = self
            .accept
            .take()
            .and_then(|a| a.join().ok())
            .unwrap_or_default();
        // Viewers get a moment to receive the end packet; a stuck one is cut off.
        let deadline = Instant::now() + GOODBYE_GRACE;
        while Instant::now() < deadline && viewers.iter().any(|v| !v.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for v in self.hub.viewers().iter() {
            let _ = v.stream.shutdown(std::net::Shutdown::Both);
        }
        for v in viewers {
            let _ = v.join();
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
            }),
        }
    }

    fn give(&self, packet: Arc<Packet>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(packet);
    }
}

/// Encodes a captured packet (which nobody else holds yet), publishes it, and
/// returns it to the pool.
fn encode_and_publish(codec: &mut dyn FrameCodec, mut packet: Arc<Packet>, hub: &Hub, pool: &PacketPool) {
    if let Some(p) = Arc::get_mut(&mut packet) {
        // CPU time, not wall time.
        let t0 = crate::clock::thread_cpu_ns();
        let encoded = codec.encode(&p.frame, &mut p.encoded);
        hub.encode_ns
            .fetch_add(crate::clock::thread_cpu_ns() - t0, Ordering::Relaxed);
        match encoded {
            Ok(e) => {
                p.passthrough = e == Encoded::Passthrough;
                hub.publish(&packet);
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
        let mut inline = if codecs.len() == 1 { codecs.pop() } else { None };
        for (i, mut codec) in codecs.into_iter().enumerate() {
            let (work, pool) = (&work, &pool);
            let spawned = std::thread::Builder::new()
                .name(format!("encode-{i}"))
                .spawn_scoped(scope, move || loop {
                    match work.take(Duration::from_millis(500)) {
                        Taken::Value(packet) => encode_and_publish(codec.as_mut(), packet, hub, pool),
                        Taken::Timeout => {}
                        Taken::Closed => break,
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start encoder thread {i}: {e}");
            }
        }
        let mut failures = 0u32;
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
            let t0 = crate::clock::thread_cpu_ns();
            let captured = source.next_frame(&mut p.frame);
            hub.source_ns
                .fetch_add(crate::clock::thread_cpu_ns() - t0, Ordering::Relaxed);
            match captured {
                Ok(()) => failures = 0,
                Err(SourceError::EndOfStream) => {
                    hub.finish("the source has ended", true);
                    break Ok(());
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
            hub.captured.fetch_add(1, Ordering::Relaxed);
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

fn accept_loop(
    listener: TcpListener,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
    handshake_timeout: Duration,
) -> Vec<JoinHandle<()>> {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
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
        // Reap viewers that have left.
        let (done, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.is_finished());
        threads = running;
        done.into_iter().for_each(|t| drop(t.join()));

        if hub.handshaking.load(Ordering::Relaxed) >= MAX_HANDSHAKING {
            log::debug!("{peer}: closed at once, {MAX_HANDSHAKING} connections are already in their handshake");
            continue;
        }
        hub.handshaking.fetch_add(1, Ordering::Relaxed);
        let (hub2, stop2) = (hub.clone(), stop.clone());
        match std::thread::Builder::new()
            .name(format!("viewer-{peer}"))
            .spawn(move || serve_viewer(stream, peer, &hub2, &stop2, handshake_timeout))
        {
            Ok(t) => threads.push(t),
            Err(e) => {
                hub.handshaking.fetch_sub(1, Ordering::Relaxed);
                log::error!("{peer}: cannot start a thread: {e}");
            }
        }
    }
    threads
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

/// Handshake, then sending. Every failure ends this viewer only.
fn serve_viewer(
    stream: TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    stop: &AtomicBool,
    handshake_timeout: Duration,
) {
    let viewer = handshake(&stream, peer, hub, handshake_timeout);
    hub.handshaking.fetch_sub(1, Ordering::Relaxed);
    let viewer = match viewer {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            log::warn!("viewer {peer} rejected: {e}");
            return;
        }
    };
    let reason = send_loop(&stream, &viewer, hub, stop);
    hub.viewers().retain(|v| !Arc::ptr_eq(v, &viewer));
    let c = &viewer.counters;
    log::info!(
        "viewer {peer} left: {reason}; sent {} frames ({:.1} MB), dropped {}",
        c.sent.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        c.dropped.load(Ordering::Relaxed)
    );
}

/// Returns the registered viewer, `None` when it was refused politely.
fn handshake(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    timeout: Duration,
) -> Result<Option<Arc<Viewer>>, protocol::ProtocolError> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = DeadlineReader {
        stream,
        deadline: Instant::now() + timeout,
    };
    let hello = ClientHello::read(&mut reader)?;
    let mut w = stream;
    if hello.version < protocol::VERSION {
        let msg = format!(
            "this server speaks protocol {}, the viewer {}",
            protocol::VERSION,
            hello.version
        );
        ServerHello::refusal(Status::Version, msg.clone()).write(&mut w)?;
        log::warn!("viewer {peer} refused: {msg}");
        return Ok(None);
    }
    let viewer = {
        let mut viewers = hub.viewers();
        if viewers.len() >= hub.max_viewers || hub.end_message().is_some() {
            drop(viewers);
            let (status, msg) = match hub.end_message() {
                Some((end, true)) => (Status::Ended, end),
                Some((end, false)) => (Status::Busy, end),
                None => (
                    Status::Busy,
                    format!(
                        "the server is busy: {} viewers already watching",
                        hub.max_viewers
                    ),
                ),
            };
            ServerHello::refusal(status, msg.clone()).write(&mut w)?;
            log::warn!("viewer {peer} refused: {msg}");
            return Ok(None);
        }
        let viewer = Arc::new(Viewer {
            peer,
            slot: Slot::default(),
            counters: ViewerCounters::default(),
            stream: stream.try_clone()?,
        });
        viewers.push(viewer.clone());
        viewer
    };
    let hello = ServerHello {
        status: Status::Ok,
        codec: hub.codec.clone(),
        frame: hub.stream.frame,
        fps: hub.stream.fps,
        max_payload: hub.max_payload,
        server_time_us: crate::clock::now_us(),
        message: hub.name.clone(),
    };
    if let Err(e) = hello.write(&mut w) {
        hub.viewers().retain(|v| !Arc::ptr_eq(v, &viewer));
        return Err(e.into());
    }
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    hub.served.fetch_add(1, Ordering::Relaxed);
    log::info!("viewer {peer} connected ({} watching)", hub.viewers().len());
    Ok(Some(viewer))
}

/// Sends packets until the viewer goes away or the stream ends; returns why it stopped.
fn send_loop(stream: &TcpStream, viewer: &Viewer, hub: &Hub, stop: &AtomicBool) -> String {
    let mut w = stream;
    let mut last_seq: Option<u64> = None;
    loop {
        match viewer.slot.take(Duration::from_millis(500)) {
            Taken::Value(packet) => {
                let payload = packet.payload();
                let gap = last_seq.is_some_and(|s| packet.frame.seq != s + 1);
                let header = PacketHeader {
                    kind: protocol::PACKET_FRAME,
                    flags: if gap {
                        protocol::FLAG_DROPPED_BEFORE
                    } else {
                        0
                    },
                    len: payload.len() as u32,
                    seq: packet.frame.seq,
                    capture_us: packet.frame.capture_us,
                };
                if let Err(e) = protocol::write_packet(&mut w, &header, payload) {
                    return format!("write failed: {e}");
                }
                last_seq = Some(packet.frame.seq);
                let c = &viewer.counters;
                c.sent.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(
                    (payload.len() + protocol::PACKET_HEADER_LEN) as u64,
                    Ordering::Relaxed,
                );
            }
            Taken::Timeout if !stop.load(Ordering::Relaxed) => {}
            Taken::Timeout | Taken::Closed => {
                let (why, final_) = hub
                    .end_message()
                    .unwrap_or_else(|| ("the server is shutting down".into(), false));
                let _ = protocol::write_end(&mut w, &why, final_).and_then(|_| w.flush());
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return why;
            }
        }
    }
}
