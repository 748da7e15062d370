//! WebRTC for browsers: the `webrtc` thread and its one UDP socket.
//!
//! `POST /whep` (`server/whep.rs`) reaches [`Endpoint::offer`] on the HTTP
//! connection's thread, which answers the offer (`session::answer_offer`:
//! parsing, str0m's set-up, the DTLS certificate: the costly part, kept off the
//! media thread) and hands the session to the `webrtc` thread through a bounded
//! channel. The thread owns the socket (by default on the TCP port's number,
//! `[serve] webrtc-port`) and every session ([`session::Sessions`], sans-IO):
//! it waits in `poll` on the socket and on a wake-up socket that a frame
//! published for a session, or a command, rings; then it reads datagrams,
//! sends frames, lets time pass, and ends sessions that are over.
//!
//! ICE-lite with host candidates only: the addresses of `listen` (every
//! address of the machine, loopback included, when it is `0.0.0.0` or `[::]`)
//! that `[serve] webrtc-networks` keeps, and the addresses of
//! `webrtc-candidates` (a public address, a container's host) resolved once at
//! start. A check that arrives at an address not offered (through NAT) is
//! taken as arrived at an offered one ([`arrived_at`]).
//! Browsers' own candidates (often `.local` names) are not resolved: a
//! browser's ICE checks say where it is.

mod session;

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::media::frame::PixelFormat;
use crate::net::ice::{self, CandidateHost, ExtraCandidate, Network};
use crate::net::protocol::Report;
use crate::net::socket::{self, recv_from_to};
use crate::net::whep::SessionId;

use super::hub::{Hub, Notify, Whep, WhepEndpoint, WhepRefusal};
use super::{ServeError, Threads};

use session::answer_offer;

/// An offer's bytes as `POST /whep` gets them, through every check and
/// str0m's parsing and set-up, answered or refused (no thread, no socket):
/// what the fuzz target `whep_offer` runs. Whether an answer came.
pub fn answer_offer_bytes(body: &[u8]) -> bool {
    let Ok(text) = crate::net::whep::offer_text(body) else {
        return false;
    };
    let candidates = [SocketAddr::from(([127, 0, 0, 1], 7878))];
    answer_offer(text, &candidates, Instant::now(), Some(1_000_000)).is_ok()
}

/// The longest the thread sleeps, so it sees the stop flag in time.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read in one turn before frames and timers get their turn.
const READS_PER_TURN: usize = 256;
/// Offers and deletes waiting for the thread.
const COMMAND_QUEUE: usize = 16;
/// How long an HTTP request waits for the thread's answer.
const COMMAND_WAIT: Duration = Duration::from_secs(2);
/// Larger than any datagram a browser sends (its MTU is about 1200 bytes).
const DATAGRAM_BUFFER: usize = 2048;
/// The socket's send buffer asked for: every session gets a keyframe at about
/// the same time (requests are coalesced), each 50 to 200 KB at 720p, and
/// what does not fit is lost.
const SEND_BUFFER: usize = 4 << 20;

/// What HTTP asks the `webrtc` thread.
enum Command {
    Add {
        answered: Box<session::Answered>,
        peer: SocketAddr,
        reply: SyncSender<Result<SessionId, WhepRefusal>>,
    },
    Delete {
        id: SessionId,
        reply: SyncSender<bool>,
    },
    Latency {
        id: SessionId,
        report: Report,
        reply: SyncSender<bool>,
    },
}

/// Rings the thread out of its `poll`: a byte on a socket pair, sent only when
/// none is pending, so a burst of frames costs one wake-up.
#[derive(Clone)]
struct Waker(Arc<WakerInner>);

struct WakerInner {
    tx: UnixDatagram,
    rx: UnixDatagram,
    pending: AtomicBool,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        let (tx, rx) = UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Waker(Arc::new(WakerInner {
            tx,
            rx,
            pending: AtomicBool::new(false),
        })))
    }

    fn wake(&self) {
        if !self.0.pending.swap(true, Ordering::AcqRel) {
            // Full only if many are pending, and one is enough.
            let _ = self.0.tx.send(&[1]);
        }
    }

    /// For the thread: empties the socket, then takes wake-ups again. A wake-up
    /// after this rings again; one before it is seen by the work that follows.
    fn reset(&self) {
        let mut buf = [0u8; 16];
        while self.0.rx.recv(&mut buf).is_ok() {}
        self.0.pending.store(false, Ordering::Release);
    }
}

/// The HTTP side's handle on the thread (the hub's [`WhepEndpoint`]).
struct Endpoint {
    commands: SyncSender<Command>,
    waker: Waker,
    candidates: Vec<SocketAddr>,
    /// Sessions estimate their links, from this bitrate (the top
    /// rendition's), when the stream has renditions to move them between.
    estimate_from: Option<u64>,
}

fn busy(detail: &str) -> WhepRefusal {
    WhepRefusal {
        status: 503,
        reason: "Service Unavailable",
        detail: detail.into(),
    }
}

impl Endpoint {
    fn ask<T>(&self, command: Command, reply: Receiver<T>) -> Result<T, WhepRefusal> {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(busy("WebRTC is busy; try again soon")),
            Err(TrySendError::Disconnected(_)) => return Err(busy("WebRTC has stopped")),
        }
        self.waker.wake();
        reply
            .recv_timeout(COMMAND_WAIT)
            .map_err(|_| busy("WebRTC did not answer in time"))
    }
}

impl WhepEndpoint for Endpoint {
    fn offer(&self, sdp: &str, peer: SocketAddr) -> Result<(SessionId, String), WhepRefusal> {
        let mut answered = answer_offer(sdp, &self.candidates, Instant::now(), self.estimate_from)?;
        let answer = std::mem::take(&mut answered.answer);
        let (reply, wait) = mpsc::sync_channel(1);
        let command = Command::Add {
            answered: Box::new(answered),
            peer,
            reply,
        };
        let id = self.ask(command, wait)??;
        Ok((id, answer))
    }

    fn delete(&self, id: SessionId) -> Result<(), WhepRefusal> {
        let (reply, wait) = mpsc::sync_channel(1);
        found(self.ask(Command::Delete { id, reply }, wait)?)
    }

    fn latency(&self, id: SessionId, report: Report) -> Result<(), WhepRefusal> {
        let (reply, wait) = mpsc::sync_channel(1);
        found(self.ask(Command::Latency { id, report, reply }, wait)?)
    }
}

fn found(known: bool) -> Result<(), WhepRefusal> {
    if known {
        Ok(())
    } else {
        Err(WhepRefusal {
            status: 404,
            reason: "Not Found",
            detail: "no such WebRTC session".into(),
        })
    }
}

/// The host candidates for a socket bound to `local`: its address, or every
/// address of this machine of its family when it is bound to all of them.
fn host_candidates(local: SocketAddr) -> io::Result<Vec<SocketAddr>> {
    if !local.ip().is_unspecified() {
        return Ok(vec![local]);
    }
    let v6 = local.is_ipv6();
    let mut list: Vec<SocketAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            // A dual-stack socket hears IPv4 too.
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(a) => v6 && (a.segments()[0] & 0xffc0) != 0xfe80,
        })
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect();
    list.sort();
    list.dedup();
    Ok(list)
}

/// The addresses of `[serve] webrtc-candidates`, a name's resolved now (all
/// its addresses), a missing port the socket's. One that cannot be resolved,
/// or is of a family the socket does not hear, is said and left out.
fn resolve_extra(extra: &[ExtraCandidate], local: SocketAddr) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for c in extra {
        let port = c.port.unwrap_or(local.port());
        let found: Vec<SocketAddr> = match &c.host {
            CandidateHost::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            CandidateHost::Name(name) => match (name.as_str(), port).to_socket_addrs() {
                Ok(found) => found.collect(),
                Err(e) => {
                    log::warn!("WebRTC candidate {c}: cannot resolve {name}: {e}; left out");
                    continue;
                }
            },
        };
        for a in found {
            // An IPv4 socket cannot answer at an IPv6 address; a dual-stack one can both.
            if a.is_ipv6() && local.is_ipv4() {
                log::warn!(
                    "WebRTC candidate {c}: {a} is IPv6 and the socket IPv4 ({local}); left out"
                );
                continue;
            }
            out.push(a);
        }
    }
    out
}

/// The candidates every session offers: the machine's addresses that
/// `networks` keeps, then the extra ones, each once.
fn offered(machine: &[SocketAddr], networks: &[Network], extra: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = machine
        .iter()
        .filter(|a| ice::kept(networks, a.ip()))
        .copied()
        .collect();
    for a in extra {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// The candidate to tell str0m a datagram arrived at: where it arrived, if
/// that is offered; else (it came through NAT, a container's published
/// port, or to an address left out) the first offered one of its family,
/// which is what the browser sent to when there is one such candidate.
/// str0m takes an ICE check only at a candidate it offered; the credentials
/// in the check, not the address, say whose it is.
fn arrived_at(candidates: &[SocketAddr], to: SocketAddr) -> SocketAddr {
    if candidates.contains(&to) {
        return to;
    }
    let v4 = |a: &SocketAddr| a.ip().to_canonical().is_ipv4();
    candidates
        .iter()
        .find(|c| v4(c) == v4(&to))
        .copied()
        .unwrap_or(to)
}

/// `a, b, c`.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    shown.join(", ")
}

/// Binds the UDP socket and starts the `webrtc` thread, when the stream is
/// H.264 and HTTP is on; otherwise `/whep` says why not. A port that cannot be
/// bound is said, and the server goes on without WebRTC.
pub(super) fn start(
    cfg: &Config,
    tcp: SocketAddr,
    threads: &mut Threads,
) -> Result<(), ServeError> {
    let hub = threads.hub.clone();
    if !cfg.serve.http {
        return Ok(());
    }
    if hub.payload_format != Some(PixelFormat::H264) && threads.webrtc_h264.is_none() {
        let _ = hub.whep.set(Whep::Off(format!(
            "WebRTC needs H.264, and this server streams {} and has no H.264 encoder for \
             WebRTC viewers (a build without the h264 feature): serve with --codec h264 or \
             build with the h264 feature",
            hub.codec
        )));
        return Ok(());
    }
    let port = match cfg.serve.webrtc_port {
        0 => tcp.port(),
        p => p,
    };
    let at = SocketAddr::new(tcp.ip(), port);
    let opened = UdpSocket::bind(at).and_then(|socket| {
        socket.set_nonblocking(true)?;
        if let Err(e) = socket::set_send_buffer(&socket, SEND_BUFFER) {
            log::debug!("WebRTC socket: SO_SNDBUF: {e}");
        }
        let local = socket.local_addr()?;
        if local.ip().is_unspecified() {
            socket::set_recv_destination(&socket)?;
        }
        let machine = host_candidates(local)?;
        Ok((socket, local, machine, Waker::new()?))
    });
    let (socket, local, machine, waker) = match opened {
        Ok(o) => o,
        Err(e) => {
            log::warn!("no WebRTC: cannot use UDP {at}: {e} (set [serve] webrtc-port)");
            let _ = hub.whep.set(Whep::Off(format!(
                "WebRTC is off: cannot use UDP {at}: {e}"
            )));
            return Ok(());
        }
    };
    let extra = resolve_extra(&cfg.serve.webrtc_candidates, local);
    let candidates = offered(&machine, &cfg.serve.webrtc_networks, &extra);
    if candidates.is_empty() {
        return Err(ServeError::NoWebrtcCandidate {
            machine: list(&machine),
            networks: list(&cfg.serve.webrtc_networks),
        });
    }
    let (commands, inbox) = mpsc::sync_channel(COMMAND_QUEUE);
    log::info!(
        "WebRTC (POST /whep) on UDP {local}, candidates {}",
        list(&candidates)
    );
    let endpoint = Endpoint {
        commands,
        waker: waker.clone(),
        candidates: candidates.clone(),
        estimate_from: (hub.ladder.len() > 1).then(|| hub.ladder[0].bits_per_second.into()),
    };
    let _ = hub.whep.set(Whep::Ready(Box::new(endpoint)));
    threads.webrtc = Some(threads.spawn("webrtc", move |hub, stop| {
        let io = Io {
            socket,
            local,
            waker,
            inbox,
            candidates,
            unsent: AtomicU64::new(0),
        };
        run(&io, hub, stop);
    })?);
    Ok(())
}

/// What the thread owns besides its sessions.
struct Io {
    socket: UdpSocket,
    local: SocketAddr,
    waker: Waker,
    inbox: Receiver<Command>,
    /// What every session offers (str0m takes a check only at one of them).
    candidates: Vec<SocketAddr>,
    /// Datagrams the socket would not take (its buffer full): lost, as on any
    /// congested link; NACKs and keyframe requests repair them.
    unsent: AtomicU64,
}

impl Io {
    fn send(&self, t: &str0m::net::Transmit) {
        let to = match (self.local, t.destination) {
            // An IPv6 socket reaches IPv4 peers at their mapped address.
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            (_, d) => d,
        };
        match self.socket.send_to(&t.contents, to) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.unsent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::debug!("WebRTC datagram to {to}: {e}"),
        }
    }
}

/// The `webrtc` thread's body: until the stop flag, then every session ends
/// with a goodbye to its browser.
fn run(io: &Io, hub: &Hub, stop: &AtomicBool) {
    let notify: Notify = {
        let waker = io.waker.clone();
        Arc::new(move || waker.wake())
    };
    let mut sessions = session::Sessions::new(hub, notify);
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let mut out = |t: &str0m::net::Transmit| io.send(t);
    loop {
        if stop.load(Ordering::Relaxed) {
            sessions.close_all("the server is shutting down", Instant::now(), &mut out);
            break;
        }
        io.waker.reset();
        loop {
            match io.inbox.try_recv() {
                Ok(Command::Add {
                    answered,
                    peer,
                    reply,
                }) => {
                    let _ = reply.send(sessions.add(*answered, peer, Instant::now()));
                }
                Ok(Command::Delete { id, reply }) => {
                    let _ = reply.send(sessions.delete(id, Instant::now(), &mut out));
                }
                Ok(Command::Latency { id, report, reply }) => {
                    let _ = reply.send(sessions.latency(id, report));
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        for _ in 0..READS_PER_TURN {
            match recv_from_to(&io.socket, &mut buf) {
                Ok(d) if d.truncated => {}
                Ok(d) => {
                    let to = arrived_at(
                        &io.candidates,
                        SocketAddr::new(d.destination.unwrap_or(io.local.ip()), io.local.port()),
                    );
                    if !sessions.receive(Instant::now(), d.source, to, &buf[..d.len], &mut out) {
                        log::trace!("WebRTC: a datagram from {} no session takes", d.source);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors (a browser gone) come back as one read
                    // that fails: nothing to do but go on next turn.
                    log::debug!("WebRTC socket: {e}");
                    break;
                }
            }
        }
        sessions.frames(Instant::now(), &mut out);
        let next = sessions.timeouts(Instant::now(), &mut out);
        sessions.reap();
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(IDLE_WAIT);
        if let Err(e) = socket::wait_readable([&io.socket, &io.waker.0.rx], wait) {
            log::warn!("WebRTC: poll failed: {e}");
            std::thread::sleep(IDLE_WAIT);
        }
    }
    let unsent = io.unsent.load(Ordering::Relaxed);
    if unsent > 0 {
        log::info!("WebRTC: {unsent} datagrams were lost to a full socket buffer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_keep_machine_addresses_and_extra_ones_follow() {
        let machine = [
            a("127.0.0.1:7878"),
            a("172.17.0.2:7878"),
            a("192.168.1.5:7878"),
        ];
        let lan = [Network::parse("192.168.0.0/16").unwrap()];
        assert_eq!(offered(&machine, &[], &[]), machine, "no networks: all");
        assert_eq!(offered(&machine, &lan, &[]), [a("192.168.1.5:7878")]);
        let extra = [a("203.0.113.7:8555"), a("192.168.1.5:7878")];
        assert_eq!(
            offered(&machine, &lan, &extra),
            [a("192.168.1.5:7878"), a("203.0.113.7:8555")],
            "each once"
        );
        let none = [Network::parse("10.0.0.0/8").unwrap()];
        assert!(offered(&machine, &none, &[]).is_empty());
    }

    #[test]
    fn extra_candidates_get_the_socket_port_and_its_family() {
        let extra = [
            ExtraCandidate::parse("203.0.113.7").unwrap(),
            ExtraCandidate::parse("203.0.113.8:8555").unwrap(),
            ExtraCandidate::parse("2001:db8::7").unwrap(),
            ExtraCandidate::parse("localhost").unwrap(),
        ];
        let got = resolve_extra(&extra, a("0.0.0.0:7878"));
        assert_eq!(got[..2], [a("203.0.113.7:7878"), a("203.0.113.8:8555")]);
        assert!(
            !got.contains(&a("[2001:db8::7]:7878")),
            "IPv6 on an IPv4 socket: {got:?}"
        );
        assert!(
            got.contains(&a("127.0.0.1:7878")),
            "a name resolved: {got:?}"
        );
        let got = resolve_extra(&extra[2..3], a("[::]:7878"));
        assert_eq!(got, [a("[2001:db8::7]:7878")]);
    }

    #[test]
    fn a_check_through_nat_counts_as_arrived_at_an_offered_candidate() {
        let offered = [
            a("192.168.1.5:7878"),
            a("203.0.113.7:8555"),
            a("[2001:db8::5]:7878"),
        ];
        assert_eq!(
            arrived_at(&offered, a("192.168.1.5:7878")),
            a("192.168.1.5:7878")
        );
        assert_eq!(
            arrived_at(&offered, a("203.0.113.7:8555")),
            a("203.0.113.7:8555")
        );
        assert_eq!(
            arrived_at(&offered, a("172.17.0.2:7878")),
            a("192.168.1.5:7878")
        );
        assert_eq!(
            arrived_at(&offered, a("[fd00::2]:7878")),
            a("[2001:db8::5]:7878")
        );
        let v6_only = [a("[2001:db8::5]:7878")];
        assert_eq!(
            arrived_at(&v6_only, a("10.0.0.1:7878")),
            a("10.0.0.1:7878"),
            "none of its family"
        );
    }
}
