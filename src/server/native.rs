//! A native viewer (`livestream view`) on its connection thread: the secure
//! handshake (pairing or pinned Noise, unless `auth = "none"`), the protocol
//! handshake inside it, then the frames. A second thread, `viewer-rx`, reads
//! what the viewer sends back (pings, latency reports); the connection thread
//! answers pings between frames and sends each frame's timing packet.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::media::clock;
use crate::net::io::{write_all_vectored, DeadlineReader};
use crate::net::protocol::{
    self, ClientHello, PacketHeader, ProtocolError, ServerHello, Status, PACKET_HEADER_LEN,
};
use crate::net::sniff::Speaks;
use crate::secure::{Accepted, Link, OpenReader, Rx, SealWriter, ServerAuth, Tx};

use super::adapt::Rung;
use super::hub::{Admission, Handshaking, Hub, Subscriber, SubscriberKind};
use super::send::{log_departure, send_loop, Framing, SendEnd, WRITE_TIMEOUT};

/// Pings answered per write at most; older ones are dropped (a viewer pings
/// once a second).
const MAX_PENDING_PINGS: usize = 4;
/// A pong's bytes on the wire.
const PONG_BYTES: usize = protocol::PACKET_HEADER_LEN + protocol::PONG_LEN;

/// Serves one native viewer, from its first byte to its departure.
pub(crate) fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    speaks: Speaks,
    handshaking: Handshaking,
    stop: &AtomicBool,
    deadline: Instant,
) {
    let hub = handshaking.hub().clone();
    let prepared = stream.set_nodelay(true).and_then(|_| {
        stream.set_write_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
    });
    if let Err(e) = prepared {
        log::debug!("viewer {peer}: {e}");
        return;
    }
    let Some(secured) = secure_handshake(stream, peer, speaks, hub.auth.as_deref(), deadline)
    else {
        return;
    };
    let (admitted, who) = match secured {
        Some(a) => {
            let who = (a.viewer_name, a.viewer_key, a.cipher);
            let admitted = sealed_handshake(stream, peer, &hub, a.link, deadline);
            (admitted, Some(who))
        }
        None => (plain_handshake(stream, peer, &hub, deadline), None),
    };
    drop(handshaking);
    let (admission, tx, rx) = match admitted {
        Ok(Some(admitted)) => admitted,
        Ok(None) => return,
        Err(e) => {
            log::warn!("viewer {peer} rejected: {e}");
            return;
        }
    };
    if let Some((name, key, cipher)) = who {
        log::info!(
            "viewer {peer} is \"{name}\" (key {}), encrypted with {cipher}",
            crate::secure::trust::fingerprint(&key),
        );
    }
    watch(stream, tx, rx, &admission, &hub, stop);
}

/// The secure handshake, as the first bytes and the server's `auth` ask.
/// `None`: the connection is done (refused, or failed; said in the log).
/// `Some(None)`: plaintext goes on.
fn secure_handshake(
    stream: &TcpStream,
    peer: SocketAddr,
    speaks: Speaks,
    auth: Option<&ServerAuth>,
    deadline: Instant,
) -> Option<Option<Accepted>> {
    match (speaks, auth) {
        (Speaks::Secure, Some(auth)) => match auth.accept(stream, peer, deadline) {
            Ok(Some(a)) => Some(Some(a)),
            Ok(None) => None,
            Err(e) => {
                log::warn!("viewer {peer} rejected in the secure handshake: {e}");
                None
            }
        },
        (Speaks::Secure, None) => {
            if let Err(e) = ServerAuth::refuse_plaintext_only(stream, deadline) {
                log::debug!("viewer {peer}: {e}");
            }
            log::warn!(
                "viewer {peer} refused: it wants encryption, and this server has auth = \"none\""
            );
            None
        }
        (_, Some(_)) => {
            refuse_plaintext(stream, peer, deadline);
            None
        }
        (_, None) => Some(None),
    }
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

/// A viewer past its handshake: its place, and the two halves of its link.
type Admitted<'a> = (Admission<'a>, Tx<&'a TcpStream>, Rx<&'a TcpStream>);

/// The protocol handshake inside sealed records.
fn sealed_handshake<'a>(
    stream: &'a TcpStream,
    peer: SocketAddr,
    hub: &'a Hub,
    link: Link,
    deadline: Instant,
) -> Result<Option<Admitted<'a>>, ProtocolError> {
    let mut tx = Tx::Sealed(SealWriter::new(stream, link.tx));
    let mut rx = OpenReader::new(DeadlineReader { stream, deadline }, link.rx);
    let admission = handshake(&mut rx, &mut tx, stream, peer, hub)?;
    Ok(admission.map(|a| (a, tx, Rx::Opened(rx.with_inner(stream)))))
}

/// The protocol handshake in plaintext (`auth = "none"`).
fn plain_handshake<'a>(
    stream: &'a TcpStream,
    peer: SocketAddr,
    hub: &'a Hub,
    deadline: Instant,
) -> Result<Option<Admitted<'a>>, ProtocolError> {
    let mut tx = Tx::Plain(stream);
    let admission = handshake(
        &mut DeadlineReader { stream, deadline },
        &mut tx,
        stream,
        peer,
        hub,
    )?;
    let rx = Rx::Plain(std::io::BufReader::with_capacity(1024, stream));
    Ok(admission.map(|a| (a, tx, rx)))
}

/// Reads the client hello and answers it; returns the viewer's place, `None`
/// when it was refused politely (and told why).
fn handshake<'a>(
    r: &mut impl Read,
    w: &mut impl Write,
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &'a Hub,
) -> Result<Option<Admission<'a>>, ProtocolError> {
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
    let viewer = Subscriber::new(peer, SubscriberKind::Native);
    viewer
        .takes_renditions
        .store(hello.renditions, Ordering::Relaxed);
    let admission = match hub.admit(&hub.main, &viewer) {
        Ok(a) => a,
        Err(refused) => {
            ServerHello::refusal(refused.status, refused.why.clone()).write(w)?;
            log::warn!("viewer {peer} refused: {}", refused.why);
            return Ok(None);
        }
    };
    ServerHello {
        status: Status::Ok,
        codec: hub.codec.clone(),
        frame: hub.stream.frame,
        fps: hub.stream.fps,
        max_payload: hub.max_payload,
        server_time_us: clock::now_us(),
        message: hub.name.clone(),
    }
    .write(w)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    log::info!("viewer {peer} connected ({} watching)", hub.watchers());
    Ok(Some(admission))
}

/// Sends frames to an admitted viewer while `viewer-rx` reads what it sends
/// back, until either side is done.
fn watch(
    stream: &TcpStream,
    tx: Tx<&TcpStream>,
    rx: Rx<&TcpStream>,
    admission: &Admission<'_>,
    hub: &Hub,
    stop: &AtomicBool,
) {
    let viewer = admission.subscriber();
    let why = std::thread::scope(|scope| {
        let upstream = std::thread::Builder::new()
            .name("viewer-rx".into())
            .spawn_scoped(scope, || upstream_loop(stream, rx, viewer));
        if let Err(e) = &upstream {
            log::warn!(
                "viewer {}: no thread for its pings ({e}): clock sync off",
                viewer.peer
            );
        }
        let why = send_loop(
            stream,
            tx,
            viewer,
            hub,
            stop,
            &mut NativeFraming {
                viewer,
                link_told: None,
                ladder: &hub.ladder,
                rendition_told: 0,
            },
        );
        // Ends the upstream reader.
        let _ = stream.shutdown(std::net::Shutdown::Read);
        let failed = upstream.ok().and_then(|u| u.join().ok().flatten());
        match (why, failed) {
            // The write failed because the connection did: say why it did.
            (SendEnd::Write(_) | SendEnd::Stalled, Some(e)) => SendEnd::Lost(e),
            (why, _) => why,
        }
    });
    log_departure(viewer, &why);
}

/// The `viewer-rx` thread: reads pings (answered by the sender with a pong),
/// latency reports and keyframe requests (which the sender honours). A viewer that breaks the protocol is disconnected.
/// Returns how the connection failed, when it did (not when it closed).
fn upstream_loop(
    stream: &TcpStream,
    mut r: Rx<&TcpStream>,
    viewer: &Subscriber,
) -> Option<std::io::Error> {
    let _ = stream.set_read_timeout(None);
    let mut failed = None;
    let why = loop {
        match protocol::read_upstream(&mut r) {
            Ok(protocol::Upstream::Ping { id, t1 }) => {
                let t2 = clock::now_us();
                let mut pings = viewer
                    .feedback
                    .pings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if pings.len() >= MAX_PENDING_PINGS {
                    pings.pop_front();
                }
                pings.push_back((id, t1, t2));
            }
            Ok(protocol::Upstream::KeyframeRequest) => {
                viewer
                    .feedback
                    .wants_keyframe
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(protocol::Upstream::Report(report)) => {
                *viewer
                    .feedback
                    .report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(report);
            }
            // The viewer went away, or the sender is done with it.
            Err(ProtocolError::Closed(_)) => break None,
            // A sealed record that does not open: altered or replayed in transit.
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                break Some(ProtocolError::Io(e))
            }
            // No read timeout is set here: this is the kernel's ETIMEDOUT,
            // the viewer stopped acknowledging (`accept.rs` DEAD_PEER).
            Err(ProtocolError::Timeout) => {
                failed = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
                break None;
            }
            Err(ProtocolError::Io(e)) => {
                // (After the sender's shutdown the read ends without an error.)
                failed = Some(e);
                break None;
            }
            Err(e) => break Some(e),
        }
    };
    if let Some(e) = why {
        log::warn!("viewer {}: {e}; disconnecting it", viewer.peer);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    failed
}

/// The wire protocol's framing: pongs waiting, the timing packet, the frame.
struct NativeFraming<'a> {
    viewer: &'a Subscriber,
    /// When the viewer was last told its link's estimate.
    link_told: Option<Instant>,
    /// The stream's renditions, and the one the viewer was last told it
    /// gets (0, the stream's, from the hello).
    ladder: &'a [Rung],
    rendition_told: u8,
}

/// How often a viewer is told what the server estimates its link carries.
const LINK_EVERY: Duration = Duration::from_secs(1);

impl NativeFraming<'_> {
    /// The rendition packet, when `frame` is of another rendition than the
    /// viewer was last told.
    fn rendition(
        &mut self,
        frame: &super::hub::EncodedFrame,
    ) -> Option<[u8; PACKET_HEADER_LEN + protocol::RENDITION_LEN]> {
        if frame.rendition == self.rendition_told {
            return None;
        }
        let rung = self.ladder.get(usize::from(frame.rendition))?;
        self.rendition_told = frame.rendition;
        Some(
            protocol::Rendition {
                width: rung.width,
                height: rung.height,
                bits_per_second: rung.bits_per_second,
                index: frame.rendition,
                count: self.ladder.len().min(u8::MAX.into()) as u8,
            }
            .packet(),
        )
    }

    /// The link packet, when one is due and there is an estimate.
    fn link(&mut self) -> Option<[u8; PACKET_HEADER_LEN + protocol::LINK_LEN]> {
        if self.link_told.is_some_and(|t| t.elapsed() < LINK_EVERY) {
            return None;
        }
        let c = &self.viewer.counters;
        let bps = c.link_bps.load(Ordering::Relaxed);
        if bps == 0 {
            return None;
        }
        self.link_told = Some(Instant::now());
        let rtt = c.rtt_us.load(Ordering::Relaxed).min(u32::MAX.into()) as u32;
        Some(protocol::link(
            bps,
            c.link_measured.load(Ordering::Relaxed),
            rtt,
        ))
    }

    /// The pongs for the pings waiting, stamped now, into `buf`; returns the bytes.
    fn pongs(&self, buf: &mut [u8; MAX_PENDING_PINGS * PONG_BYTES]) -> usize {
        let mut pings = self
            .viewer
            .feedback
            .pings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        let t3 = clock::now_us();
        while let Some((id, t1, t2)) = pings.pop_front() {
            buf[n..n + PONG_BYTES].copy_from_slice(&protocol::pong(id, t1, t2, t3));
            n += PONG_BYTES;
        }
        n
    }
}

impl<W: Write> Framing<W> for NativeFraming<'_> {
    /// One frame after the pongs waiting and the frame's timing packet, in one
    /// `writev`.
    fn frame(
        &mut self,
        w: &mut W,
        frame: &super::hub::EncodedFrame,
        gap: bool,
    ) -> std::io::Result<usize> {
        let mut pong_buf = [0u8; MAX_PENDING_PINGS * PONG_BYTES];
        let pong_len = self.pongs(&mut pong_buf);
        let link = self.link();
        let link: &[u8] = link.as_ref().map_or(&[], |l| l);
        let rendition = self.rendition(frame);
        let rendition: &[u8] = rendition.as_ref().map_or(&[], |r| r);
        let timing = protocol::timing(frame.frame.seq, frame.encoded_us, clock::now_us());
        let payload = frame.payload();
        let head = PacketHeader {
            kind: protocol::PACKET_FRAME,
            flags: if gap {
                protocol::FLAG_DROPPED_BEFORE
            } else {
                0
            } | if frame.keyframe {
                protocol::FLAG_KEYFRAME
            } else {
                0
            },
            len: payload.len() as u32,
            seq: frame.frame.seq,
            capture_us: frame.frame.capture_us,
        }
        .encode();
        write_all_vectored(
            w,
            &mut [
                IoSlice::new(&pong_buf[..pong_len]),
                IoSlice::new(link),
                IoSlice::new(rendition),
                IoSlice::new(&timing),
                IoSlice::new(&head),
                IoSlice::new(payload),
            ],
        )?;
        Ok(pong_len + link.len() + rendition.len() + timing.len() + head.len() + payload.len())
    }

    /// Pongs go out between frames too.
    fn idle(&mut self, w: &mut W) -> std::io::Result<()> {
        let mut buf = [0u8; MAX_PENDING_PINGS * PONG_BYTES];
        let n = self.pongs(&mut buf);
        if n > 0 {
            w.write_all(&buf[..n])?;
        }
        if let Some(link) = self.link() {
            w.write_all(&link)?;
        }
        Ok(())
    }

    fn end(&mut self, w: &mut W, why: &str, final_: bool) {
        let _ = protocol::write_end(w, why, final_).and_then(|_| w.flush());
    }
}
