//! The `accept` thread: takes connections and starts a `viewer-ADDR` thread for
//! each (`connection.rs`), after two cheap checks that keep a flood from
//! piling up threads: a token bucket per address, and a bound on connections
//! still in their handshake. It reaps finished connection threads as it goes and
//! hands the live ones to `RunningServer` at shutdown, which cuts off any still
//! stuck.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::net::socket;

use super::connection::serve_connection;
use super::hub::{Hub, MAX_HANDSHAKING};

/// A connection whose data stays unacknowledged this long is ended by the
/// kernel (`TCP_USER_TIMEOUT`): a viewer that vanished without a FIN (its link
/// gone, powered off) is let go, and its place freed, within about this
/// (the send loop's own write timeout catches it only once the socket is
/// full, which a slow stream takes long to do). A link away for less comes
/// back to the connection as it was.
const DEAD_PEER: Duration = Duration::from_secs(10);

/// The least time TCP waits for a lost packet's acknowledgement before it
/// sends it again, on accepted connections (the kernel adds the round trip
/// and its variation; its own least is 200 ms). A lost resend then stalls a
/// LAN stream 150 ms, not 600: at 720p30 H.264 with 5 % of packets lost to
/// the viewer, a native viewer's longest gap was 99-345 ms in seven runs
/// (29.0-30.1 fps), against 100-668 ms (28.1-30.0 fps) in seven with the
/// kernel's. Not lower: at 20 ms a clean loopback stream sent 43 needless
/// probes in 20 s (its viewer's delayed acknowledgements take 40 ms), at
/// 50 ms none.
const LAN_RTO_MIN: Duration = Duration::from_millis(50);

/// Addresses whose connection rate is tracked at most.
const RATE_TABLE: usize = 4096;

/// A connection's thread, and a handle to its socket to cut it off at shutdown.
pub(crate) struct Connection {
    pub(crate) thread: JoinHandle<()>,
    pub(crate) stream: TcpStream,
}

/// New connections allowed per address: a token bucket each, refilled at `rate`
/// a second up to twice that. Bounded: idle addresses are forgotten, and at most
/// [`RATE_TABLE`] are tracked (the idlest go first). Time is an input, so it is
/// tested without a clock.
pub(crate) struct RateLimit {
    rate: f64,
    /// Tokens, when they were counted, connections refused since the last report.
    buckets: HashMap<IpAddr, (f64, Instant, u64)>,
    last_report: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: f64, now: Instant) -> RateLimit {
        RateLimit {
            rate,
            buckets: HashMap::new(),
            last_report: now,
        }
    }

    fn burst(&self) -> f64 {
        self.rate * 2.0
    }

    /// Whether a connection from `ip` at `now` may go on.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if ip.is_loopback() {
            return true;
        }
        if self.buckets.len() >= RATE_TABLE && !self.buckets.contains_key(&ip) {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst());
        let (tokens, at, refused) = self.buckets.entry(ip).or_insert((burst, now, 0));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return true;
        }
        *refused += 1;
        false
    }

    /// Forgets addresses whose bucket has refilled, or failing that the idlest.
    fn make_room(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst());
        self.buckets.retain(|_, (tokens, at, _)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= RATE_TABLE {
            let idlest = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(k, _)| *k);
            if let Some(idlest) = idlest {
                self.buckets.remove(&idlest);
            }
        }
    }

    /// Once a second: which addresses were refused, and how often.
    fn report(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_report) < Duration::from_secs(1) {
            return;
        }
        self.last_report = now;
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

/// Connections closed at once because [`MAX_HANDSHAKING`] were pending, said at
/// most once a second.
struct Overflow {
    closed: u64,
    last_said: Option<Instant>,
}

impl Overflow {
    fn closed(&mut self, peer: SocketAddr, now: Instant) {
        self.closed += 1;
        if self
            .last_said
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            log::warn!(
                "closed {} connection(s) at once (the last from {peer}): {MAX_HANDSHAKING} \
                 connections are already in their handshake",
                self.closed
            );
            self.closed = 0;
            self.last_said = Some(now);
        }
    }
}

/// What the accept thread is given.
pub(crate) struct AcceptSetup {
    pub(crate) listener: TcpListener,
    /// A second port taking the same connections (`[serve] rtsp-listen`:
    /// RTSP clients expect 554 or 8554).
    pub(crate) second: Option<TcpListener>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) connections_per_second: f64,
}

pub(crate) fn accept_loop(
    setup: AcceptSetup,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
) -> Vec<Connection> {
    let mut connections: Vec<Connection> = Vec::new();
    let mut limit = RateLimit::new(setup.connections_per_second, Instant::now());
    let mut overflow = Overflow {
        closed: 0,
        last_said: None,
    };
    while !stop.load(Ordering::Relaxed) {
        limit.report(Instant::now());
        reap(&mut connections);
        let wait = Duration::from_millis(200);
        let ready = match &setup.second {
            Some(second) => socket::wait_readable([&setup.listener, second], wait),
            None => socket::wait_readable([&setup.listener], wait).map(|[one]| [one, false]),
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                log::warn!("waiting for connections: {e}");
                std::thread::sleep(wait);
                continue;
            }
        };
        let listeners = std::iter::once(&setup.listener).chain(setup.second.as_ref());
        for (listener, _) in listeners.zip(ready).filter(|(_, r)| *r) {
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    continue;
                }
            };
            if !limit.allow(peer.ip(), Instant::now()) {
                continue; // dropped: closed at once
            }
            if let Some(c) = start_connection(stream, peer, hub, stop, &setup, &mut overflow) {
                connections.push(c);
            }
        }
    }
    connections
}

/// Joins the connection threads that have finished.
fn reap(connections: &mut Vec<Connection>) {
    let mut i = 0;
    while i < connections.len() {
        if connections[i].thread.is_finished() {
            let _ = connections.swap_remove(i).thread.join();
        } else {
            i += 1;
        }
    }
}

/// Starts the connection's thread, unless too many are in their handshake.
fn start_connection(
    stream: TcpStream,
    peer: SocketAddr,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
    setup: &AcceptSetup,
    overflow: &mut Overflow,
) -> Option<Connection> {
    // Taken here and given back by the connection's thread when its handshake
    // is over (the guard moves there): a place is never leaked.
    let Some(handshaking) = Hub::begin_handshake(hub) else {
        overflow.closed(peer, Instant::now());
        return None;
    };
    if let Err(e) = socket::set_user_timeout(&stream, DEAD_PEER) {
        log::debug!("{peer}: TCP_USER_TIMEOUT: {e}");
    }
    if let Err(e) = socket::set_rto_min(&stream, LAN_RTO_MIN) {
        // Before Linux 6.16: the kernel's 200 ms.
        log::debug!("{peer}: TCP_RTO_MIN_US: {e}");
    }
    let handle = match stream.try_clone() {
        Ok(h) => h,
        Err(e) => {
            log::warn!("{peer}: {e}");
            return None;
        }
    };
    let stop = stop.clone();
    let deadline = Instant::now() + setup.handshake_timeout;
    let spawned = std::thread::Builder::new()
        .name(format!("viewer-{peer}"))
        .spawn(move || serve_connection(stream, peer, handshaking, &stop, deadline));
    match spawned {
        Ok(thread) => Some(Connection {
            thread,
            stream: handle,
        }),
        Err(e) => {
            log::error!("{peer}: cannot start a thread: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(10.0, t0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        assert!(l.allow(b, t0), "other addresses are not affected");
        let later = t0 + Duration::from_millis(300);
        let n = (0..100).filter(|_| l.allow(a, later)).count();
        assert_eq!(n, 3, "0.3 s at 10 a second");
        let much_later = t0 + Duration::from_secs(60);
        let n = (0..100).filter(|_| l.allow(a, much_later)).count();
        assert_eq!(n, 20, "refills up to the burst, no further");
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(
            (0..1000).all(|_| l.allow(lo, t0)),
            "loopback is not limited"
        );
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_busy() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let mut l = RateLimit::new(10.0, t0);
        let busy: IpAddr = "10.0.0.1".parse().unwrap();
        let spent = (0..100).filter(|_| l.allow(busy, t1)).count();
        assert_eq!(spent, 20);
        // Others seen once each, earlier: the idlest, forgotten first.
        for i in 0..(RATE_TABLE as u32 + 100) {
            l.allow(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), t0);
        }
        assert!(l.buckets.len() <= RATE_TABLE);
        assert!(
            !l.allow(busy, t1),
            "an address over its rate is not forgotten"
        );
    }
}
