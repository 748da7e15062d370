//! The `net-reader` thread: reads packets into recycled payload buffers and
//! hands the newest frame to the calling thread through a one-frame slot. It
//! never waits for the sink: a frame the calling thread has not taken when the
//! next comes is dropped here, and counted. Pongs become clock samples.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::media::clock::{self, ClockSync};
use crate::media::slot::Slot;
use crate::net::protocol::{self, Packet, PacketHeader, ProtocolError};
use crate::secure::Rx;

/// A received frame on its way from the reader to the decoder.
pub(crate) struct Received {
    pub(crate) header: PacketHeader,
    pub(crate) payload: Vec<u8>,
    /// When the payload was in (our clock, µs).
    pub(crate) received_us: u64,
    /// The server's stamps from the frame's timing packet: (encoded, sent).
    pub(crate) timing: Option<(u64, u64)>,
}

/// How the reader stopped: the server's end packet (message, final), or the
/// connection's failure.
pub(crate) type ReadEnd = Result<(String, bool), ProtocolError>;

/// What the reader thread and the calling thread share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) slot: Slot<Received>,
    /// Payload buffers to reuse.
    free: Mutex<Vec<Vec<u8>>>,
    pub(crate) dropped_here: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Why the reader stopped, once it has.
    ended: Mutex<Option<ReadEnd>>,
    /// The server's clock against ours, from the handshake and the pongs.
    clock: Mutex<ClockSync>,
}

impl Shared {
    pub(crate) fn new(clock: ClockSync) -> Shared {
        Shared {
            clock: Mutex::new(clock),
            ..Shared::default()
        }
    }

    pub(crate) fn clock(&self) -> MutexGuard<'_, ClockSync> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives a payload buffer back for the next frame.
    pub(crate) fn recycle(&self, payload: Vec<u8>) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(payload);
    }

    fn buffer(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Why the reader stopped (taken once).
    pub(crate) fn take_end(&self) -> Option<ReadEnd> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Starts the reader on `rx`; payloads over `max_payload` break the connection.
pub(crate) fn spawn(
    rx: Rx<TcpStream>,
    max_payload: usize,
    shared: &Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("net-reader".into())
        .spawn(move || read_loop(rx, max_payload, &shared))
}

fn read_loop(mut r: Rx<TcpStream>, max_payload: usize, shared: &Shared) {
    // The timing packet comes just before its frame: (seq, encoded, sent).
    let mut timing: Option<(u64, u64, u64)> = None;
    let ended = loop {
        let mut payload = shared.buffer();
        match protocol::read_packet(&mut r, max_payload, &mut payload) {
            Ok(Packet::Frame(header)) => {
                let received_us = clock::now_us();
                shared.bytes.fetch_add(
                    (payload.len() + protocol::PACKET_HEADER_LEN) as u64,
                    Ordering::Relaxed,
                );
                let timing = timing
                    .take()
                    .filter(|t| t.0 == header.seq)
                    .map(|(_, e, s)| (e, s));
                let received = Received {
                    header,
                    payload,
                    received_us,
                    timing,
                };
                if let Some(stale) = shared.slot.put(received) {
                    shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                    shared.recycle(stale.payload);
                }
                continue;
            }
            Ok(Packet::End { message, final_ }) => break Ok((message, final_)),
            Ok(Packet::Timing {
                seq,
                encoded_us,
                sent_us,
            }) => timing = Some((seq, encoded_us, sent_us)),
            Ok(Packet::Pong { t1, t2, t3, .. }) => {
                let t4 = clock::now_us();
                shared.clock().add(t1, t2, t3, t4);
            }
            Err(e) => break Err(e),
        }
        shared.recycle(payload);
    };
    *shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
    shared.slot.close();
}
