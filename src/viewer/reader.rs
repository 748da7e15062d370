//! The `net-reader` thread: reads packets into a recycled payload buffer,
//! decodes every frame into a recycled picture, and hands the newest picture
//! to the calling thread through a one-picture slot. It never waits for the
//! sink: a picture the calling thread has not taken when the next is decoded
//! is dropped, and counted. Pongs become clock samples.
//!
//! Decoding here, before the hand-over, is what keeps an inter-frame stream
//! (H.264) whole: a slow sink drops decoded pictures, never undecoded frames
//! that later ones depend on. When the chain breaks anyway (a payload that
//! does not decode), the reader skips frames until the next keyframe and asks
//! the server for one.
//!
//! A sink that stores an H.264 stream as it came (a recording) gets the access
//! units themselves, checked but not decoded. For it the hand-over keeps the
//! chain too: a delta that would follow a picture the sink has not taken is
//! dropped instead, and the reader waits for a keyframe and asks for one.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::codecs::FrameCodec;
use crate::error::CodecError;
use crate::media::annexb;
use crate::media::clock::{self, ClockSync};
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
use crate::media::scale::Scaler;
use crate::media::slot::Slot;
use crate::net::protocol::{self, Packet, PacketHeader, ProtocolError, Rendition, FLAG_KEYFRAME};
use crate::secure::{Rx, Tx};
use crate::sinks::input::SinkInput;

use super::latency::Stamps;

/// A keyframe is asked for again at most this often while the reader waits.
const REASK: Duration = Duration::from_millis(500);
/// Keyframes in a row that do not decode, after which the server counts as
/// broken (the session ends and the viewer reconnects).
const MAX_BAD_KEYFRAMES: u32 = 3;

/// A decoded picture on its way from the reader to the sink.
pub(crate) struct Picture {
    pub(crate) frame: Frame,
    pub(crate) stamps: Stamps,
}

/// How the reader stopped.
pub(crate) enum ReadEnd {
    /// The server's end packet: its message, and whether the stream is over
    /// for good.
    Ended { message: String, final_: bool },
    /// The connection failed or broke the protocol.
    Failed(ProtocolError),
    /// The server's frames do not decode.
    BadFrame(CodecError),
}

/// What the reader thread and the calling thread share.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) slot: Slot<Picture>,
    /// Picture buffers to reuse.
    free: Mutex<Vec<Frame>>,
    /// Pictures the sink was too busy for, and camera JPEGs that did not decode.
    pub(crate) dropped_here: AtomicU64,
    /// Frames the server skipped for this viewer (gaps in sequence numbers).
    pub(crate) dropped_upstream: AtomicU64,
    /// Frames received but not decoded while waiting for a keyframe.
    pub(crate) waited: AtomicU64,
    /// Keyframe requests sent.
    pub(crate) keyframes_asked: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// What the server estimates our link carries, bit/s (0: it has not
    /// said), and whether it measured it or only knows a lower bound.
    pub(crate) link_bps: AtomicU64,
    pub(crate) link_measured: AtomicBool,
    /// The rendition the server sends now, when it said (a smaller one than
    /// the stream's when our link cannot carry that).
    pub(crate) rendition: Mutex<Option<Rendition>>,
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

    /// Gives a picture's buffer back for the next one.
    pub(crate) fn recycle(&self, frame: Frame) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
    }

    fn picture_buffer(&self) -> Frame {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(Frame::empty)
    }

    /// Why the reader stopped (taken once).
    pub(crate) fn take_end(&self) -> Option<ReadEnd> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What the reader decodes with: the codec the server named, what the sink
/// takes, and where the stream's chain stands.
pub(crate) struct Decoding {
    pub(crate) codec: Box<dyn FrameCodec>,
    pub(crate) input: SinkInput,
    /// The stream's frames as the server announced them.
    pub(crate) stream: FrameInfo,
    /// The link's writing half, shared with the calling thread's pings.
    pub(crate) tx: Arc<Mutex<Tx<TcpStream>>>,
    /// Deltas are not decoded until a keyframe comes.
    waiting: bool,
    asked: Option<Instant>,
    bad_keyframes: u32,
    /// The sequence number of the last frame received.
    last_seq: Option<u64>,
    /// The picture size of the frames that come now: the stream's, or a
    /// smaller rendition's (scaled back up to the stream's for the sink).
    picture: (u32, u32),
    scaler: Scaler,
    scaled: Vec<u8>,
}

impl Decoding {
    pub(crate) fn new(
        codec: Box<dyn FrameCodec>,
        input: SinkInput,
        stream: FrameInfo,
        tx: Arc<Mutex<Tx<TcpStream>>>,
    ) -> Decoding {
        Decoding {
            waiting: codec.inter_frame(),
            codec,
            input,
            stream,
            tx,
            asked: None,
            bad_keyframes: 0,
            last_seq: None,
            picture: (stream.width, stream.height),
            scaler: Scaler::default(),
            scaled: Vec::new(),
        }
    }

    /// The server says the frames that follow are of rendition `r`: checked
    /// against the stream (untrusted), then decoded at its size. Told to the
    /// person once per change, with what the link took over the last second
    /// (`received_bps`, what this viewer received) as the reason for a move
    /// down.
    fn rendition(
        &mut self,
        r: Rendition,
        received_bps: u64,
        shared: &Shared,
    ) -> Result<(), ProtocolError> {
        r.check(&self.stream)?;
        let refused = if self.input.keeps().is_some() {
            "this viewer keeps the stream as it came and did not offer to take renditions"
        } else if !self.codec.inter_frame() {
            "only an H.264 stream has renditions"
        } else {
            ""
        };
        if !refused.is_empty() {
            return Err(ProtocolError::Invalid {
                what: "rendition packet",
                why: refused.into(),
            });
        }
        let size = (r.width, r.height);
        let mut said = shared.rendition.lock().unwrap_or_else(|e| e.into_inner());
        let mbit = |bps: u64| bps as f64 / 1e6;
        if size != self.picture && r.index == 0 {
            log::info!(
                "the link has room again: the full stream, {}x{} ({:.1} Mbit/s)",
                r.width,
                r.height,
                mbit(r.bits_per_second.into())
            );
        } else if size != self.picture {
            log::warn!(
                "the link took ~{:.1} Mbit/s: the server sends {}p ({}x{}, {:.1} Mbit/s) instead of {}x{}",
                mbit(received_bps),
                r.height,
                r.width,
                r.height,
                mbit(r.bits_per_second.into()),
                self.stream.width,
                self.stream.height
            );
        }
        self.picture = size;
        *said = Some(r);
        Ok(())
    }

    /// Asks the server for a keyframe, unless it was asked just now.
    fn ask(&mut self, shared: &Shared) {
        let now = Instant::now();
        if self.asked.is_some_and(|t| now.duration_since(t) < REASK) {
            return;
        }
        self.asked = Some(now);
        shared.keyframes_asked.fetch_add(1, Ordering::Relaxed);
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        // A failed write shows up as a broken connection in the next read.
        let _ = protocol::write_keyframe_request(&mut *tx);
    }

    /// Decodes one received frame into a picture for the sink. `Ok(None)`:
    /// nothing to show for it (skipped until a keyframe, or a camera's JPEG
    /// that does not decode); `Err`: the server's payloads do not decode.
    fn decode(
        &mut self,
        header: &PacketHeader,
        payload: &mut Vec<u8>,
        received_us: u64,
        timing: Option<(u64, u64)>,
        shared: &Shared,
    ) -> Result<Option<Picture>, CodecError> {
        if let Some(last) = self.last_seq {
            let gap = header.seq.saturating_sub(last.saturating_add(1));
            shared.dropped_upstream.fetch_add(gap, Ordering::Relaxed);
        }
        self.last_seq = Some(header.seq);
        let keyframe = header.flags & FLAG_KEYFRAME != 0;
        if self.waiting && !keyframe {
            shared.waited.fetch_add(1, Ordering::Relaxed);
            self.ask(shared);
            return Ok(None);
        }
        let mut frame = shared.picture_buffer();
        frame.info = self.stream;
        (frame.info.width, frame.info.height) = self.picture;
        frame.seq = header.seq;
        frame.capture_us = header.capture_us;
        let decoded = match self.input.keeps() {
            Some(format) => {
                frame.info = self.input.info().frame;
                keep(format, payload, &mut frame)
            }
            None => self.codec.decode(payload, &mut frame),
        };
        if let Err(e) = decoded {
            shared.recycle(frame);
            return self.lost_chain(e, keyframe, header.seq, shared);
        }
        if self.codec.inter_frame() {
            self.waiting = false;
            self.bad_keyframes = 0;
        }
        if let Err(e) = self.scale_to_stream(&mut frame) {
            shared.recycle(frame);
            return Err(e);
        }
        if let Some(p) = self.input.to_pixels() {
            if let Err(e) = p.decode(&mut frame) {
                log::debug!("frame {}: {e}; skipped", header.seq);
                shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                shared.recycle(frame);
                return Ok(None);
            }
        }
        Ok(Some(Picture {
            frame,
            stamps: Stamps {
                seq: header.seq,
                captured_us: header.capture_us,
                timing,
                ours_us: [received_us, clock::now_us(), 0],
            },
        }))
    }

    /// A smaller rendition's decoded picture, scaled to the stream's size:
    /// the sink sees one size throughout.
    fn scale_to_stream(&mut self, frame: &mut Frame) -> Result<(), CodecError> {
        let stream = (self.stream.width, self.stream.height);
        let got = (frame.info.width, frame.info.height);
        if got == stream {
            return Ok(());
        }
        let corrupt = |why: String| CodecError::Corrupt {
            codec: "rendition",
            why,
        };
        if frame.info.format != PixelFormat::I420 {
            return Err(corrupt(format!(
                "a {} picture of a rendition (I420 expected)",
                frame.info.format
            )));
        }
        self.scaler
            .i420(&frame.data, got, &mut self.scaled, stream)
            .map_err(|e| corrupt(e.to_string()))?;
        std::mem::swap(&mut frame.data, &mut self.scaled);
        frame.info = FrameInfo::packed(PixelFormat::I420, stream.0, stream.1)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(())
    }

    /// The sink keeps the stream as it came and has not taken the last picture:
    /// the next it gets must be a keyframe.
    fn lost_in_slot(&mut self, shared: &Shared) {
        self.waiting = true;
        self.asked = None;
        self.ask(shared);
    }

    /// Whether the hand-over to the sink must keep the chain whole.
    fn keeps_chain(&self) -> bool {
        self.input.keeps().is_some() && self.codec.inter_frame()
    }

    /// A payload did not decode. An intra-only stream's server is broken; an
    /// inter-frame stream waits for the next keyframe, unless keyframes keep
    /// failing too.
    fn lost_chain(
        &mut self,
        e: CodecError,
        keyframe: bool,
        seq: u64,
        shared: &Shared,
    ) -> Result<Option<Picture>, CodecError> {
        if !self.codec.inter_frame() {
            return Err(e);
        }
        if keyframe {
            self.bad_keyframes += 1;
            if self.bad_keyframes >= MAX_BAD_KEYFRAMES {
                return Err(e);
            }
        }
        log::warn!("frame {seq} does not decode ({e}): waiting for a keyframe");
        self.waiting = true;
        self.asked = None;
        self.ask(shared);
        Ok(None)
    }
}

/// Hands a payload the sink keeps as it came over into `frame`, once it is
/// checked to be what the stream says: a whole JPEG, or an H.264 access unit
/// of the stream's picture size.
fn keep(format: PixelFormat, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
    match format {
        PixelFormat::Jpeg if !payload.starts_with(&[0xFF, 0xD8]) => Err(CodecError::Corrupt {
            codec: "jpeg",
            why: "the payload does not start with a JPEG marker".into(),
        }),
        PixelFormat::H264 => {
            let stream = (frame.info.width, frame.info.height);
            annexb::check_stream_access_unit(payload, stream).map_err(|e| CodecError::Decode {
                codec: "h264",
                source: Box::new(e),
            })?;
            std::mem::swap(&mut frame.data, payload);
            Ok(())
        }
        _ => {
            std::mem::swap(&mut frame.data, payload);
            Ok(())
        }
    }
}

/// Bit/s of frames received over the last whole second.
struct Received {
    since: Instant,
    bytes_then: u64,
    bps: u64,
}

impl Received {
    fn new() -> Received {
        Received {
            since: Instant::now(),
            bytes_then: 0,
            bps: 0,
        }
    }

    /// `bytes`: received so far.
    fn count(&mut self, bytes: u64) {
        let elapsed = self.since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let delta = bytes.saturating_sub(self.bytes_then);
            self.bps = (delta as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            (self.since, self.bytes_then) = (Instant::now(), bytes);
        }
    }
}

/// Starts the reader on `rx`; payloads over `max_payload` break the connection.
pub(crate) fn spawn(
    rx: Rx<TcpStream>,
    max_payload: usize,
    decoding: Decoding,
    shared: &Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("net-reader".into())
        .spawn(move || read_loop(rx, max_payload, decoding, &shared))
}

fn read_loop(mut r: Rx<TcpStream>, max_payload: usize, mut decoding: Decoding, shared: &Shared) {
    // The timing packet comes just before its frame: (seq, encoded, sent).
    let mut timing: Option<(u64, u64, u64)> = None;
    let mut payload = Vec::new();
    // The newest frame handed to the sink: pictures go forward only.
    let mut offered: Option<u64> = None;
    // What came in over the last whole second, for a person.
    let mut received = Received::new();
    let ended = loop {
        match protocol::read_packet(&mut r, max_payload, &mut payload) {
            Ok(Packet::Frame(header)) => {
                let received_us = clock::now_us();
                let bytes = shared.bytes.fetch_add(
                    (payload.len() + protocol::PACKET_HEADER_LEN) as u64,
                    Ordering::Relaxed,
                );
                received.count(bytes);
                let timing = timing
                    .take()
                    .filter(|t| t.0 == header.seq)
                    .map(|(_, e, s)| (e, s));
                match decoding.decode(&header, &mut payload, received_us, timing, shared) {
                    Ok(Some(picture)) if offered.is_some_and(|s| header.seq <= s) => {
                        // Decoded to keep the chain, not shown: the first
                        // frames of a rendition the server moved us to can
                        // be older than the last one shown (its encoder lags
                        // the other's by a frame or so).
                        shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                        shared.recycle(picture.frame);
                    }
                    Ok(Some(picture)) => {
                        offered = Some(header.seq);
                        let keyframe = header.flags & FLAG_KEYFRAME != 0;
                        if decoding.keeps_chain() && !keyframe {
                            // The sink's last picture is still there: this
                            // delta would follow a gap in its recording.
                            if let Some(refused) = shared.slot.offer(picture, |_| true) {
                                shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                                shared.recycle(refused.frame);
                                decoding.lost_in_slot(shared);
                            }
                        } else if let Some(stale) = shared.slot.put(picture) {
                            shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                            shared.recycle(stale.frame);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => break ReadEnd::BadFrame(e),
                }
            }
            Ok(Packet::End { message, final_ }) => break ReadEnd::Ended { message, final_ },
            Ok(Packet::Timing {
                seq,
                encoded_us,
                sent_us,
            }) => timing = Some((seq, encoded_us, sent_us)),
            Ok(Packet::Pong { t1, t2, t3, .. }) => {
                let t4 = clock::now_us();
                shared.clock().add(t1, t2, t3, t4);
            }
            Ok(Packet::Link {
                bits_per_second,
                measured,
                ..
            }) => {
                shared.link_bps.store(bits_per_second, Ordering::Relaxed);
                shared.link_measured.store(measured, Ordering::Relaxed);
            }
            Ok(Packet::Rendition(r)) => {
                if let Err(e) = decoding.rendition(r, received.bps, shared) {
                    break ReadEnd::Failed(e);
                }
            }
            Err(e) => break ReadEnd::Failed(e),
        }
    };
    *shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
    shared.slot.close();
}
