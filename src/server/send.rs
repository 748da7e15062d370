//! The writing half of every network viewer, native or MJPEG: takes the newest
//! frame of the viewer's slot, waits for room in the socket, and writes it in
//! the viewer's framing, until the viewer goes or the stream ends. Runs on the
//! viewer's own connection thread.
//!
//! Unsent data in the kernel is latency: the socket may hold little
//! (`TCP_NOTSENT_LOWAT`), so when the link is slower than the stream, frames
//! wait in the newest-wins slot, and are dropped there, instead of queueing in
//! the socket.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::slot::Taken;
use crate::net::socket::{self, Ready};

use super::hub::{EncodedFrame, Hub, StreamEnd, Subscriber, SubscriberKind};

/// A viewer that accepts no bytes for this long is disconnected.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much written but not yet sent stays in a viewer's socket.
const NOTSENT_LOWAT: usize = 128 << 10;

/// How one kind of viewer frames what it is sent.
pub(crate) trait Framing<W> {
    /// Writes one frame; `gap`: frames were skipped before it. Returns the bytes.
    fn frame(&mut self, w: &mut W, frame: &EncodedFrame, gap: bool) -> std::io::Result<usize>;
    /// Called when no frame came for 0.1 s.
    fn idle(&mut self, _w: &mut W) -> std::io::Result<()> {
        Ok(())
    }
    /// Says goodbye: `why` the stream ended, and whether for good.
    fn end(&mut self, w: &mut W, why: &str, final_: bool);
}

/// Why a viewer's sending stopped, for the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendEnd {
    #[error("{0}")]
    Ended(String),
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("write timed out after {} s", WRITE_TIMEOUT.as_secs())]
    Stalled,
    #[error("poll failed: {0}")]
    Poll(#[source] std::io::Error),
}

/// Waits until the socket takes more (its unsent data is under the low-water
/// mark). Meanwhile a newer frame replaces `frame`, which counts as dropped for
/// this viewer. Gives up after the write timeout.
fn wait_writable(
    stream: &TcpStream,
    viewer: &Subscriber,
    frame: &mut Arc<EncodedFrame>,
    stop: &AtomicBool,
) -> Result<(), SendEnd> {
    let started = Instant::now();
    loop {
        if socket::wait(stream, Ready::Write, Duration::from_millis(20)).map_err(SendEnd::Poll)? {
            return Ok(()); // writable, or an error the write will report
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() >= WRITE_TIMEOUT {
            return Err(SendEnd::Stalled);
        }
        if let Taken::Value(newer) = viewer.slot.take(Duration::ZERO) {
            viewer.dropped();
            *frame = newer;
        }
    }
}

/// Sends the newest frame of the viewer's slot until the viewer goes away or
/// the stream ends (then `framing` says goodbye); returns why it stopped.
pub(crate) fn send_loop<W>(
    stream: &TcpStream,
    mut w: W,
    viewer: &Subscriber,
    hub: &Hub,
    stop: &AtomicBool,
    framing: &mut impl Framing<W>,
) -> SendEnd {
    let mut last_seq: Option<u64> = None;
    if let Err(e) = socket::set_notsent_lowat(stream, NOTSENT_LOWAT) {
        log::debug!("TCP_NOTSENT_LOWAT: {e}");
    }
    loop {
        match viewer.slot.take(Duration::from_millis(100)) {
            Taken::Value(mut frame) => {
                if let Err(why) = wait_writable(stream, viewer, &mut frame, stop) {
                    return why;
                }
                let gap = last_seq.is_some_and(|s| frame.frame.seq != s + 1);
                match framing.frame(&mut w, &frame, gap) {
                    Ok(bytes) => viewer.sent(&frame, bytes),
                    Err(e) => return SendEnd::Write(e),
                }
                last_seq = Some(frame.frame.seq);
            }
            Taken::Timeout if !stop.load(Ordering::Relaxed) => {
                if let Err(e) = framing.idle(&mut w) {
                    return SendEnd::Write(e);
                }
            }
            Taken::Timeout | Taken::Closed => {
                let end = hub.end().unwrap_or_else(|| StreamEnd {
                    why: "the server is shutting down".into(),
                    final_: false,
                });
                framing.end(&mut w, &end.why, end.final_);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return SendEnd::Ended(end.why);
            }
        }
    }
}

/// One line when a viewer leaves: why, and what it got.
pub(crate) fn log_departure(viewer: &Subscriber, why: &SendEnd) {
    let c = &viewer.counters;
    log::info!(
        "{} viewer {} left: {why}; sent {} frames ({:.1} MB), dropped {}",
        match viewer.kind {
            SubscriberKind::Http => "HTTP",
            _ => "native",
        },
        viewer.peer,
        c.sent.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        c.dropped.load(Ordering::Relaxed)
    );
}
