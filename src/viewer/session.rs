//! One connection's session on the calling thread: the newest received frame
//! → decode → present, with a ping a second and the status line, until an end
//! condition, the sink's end or the connection's. The `net-reader` thread
//! (`reader.rs`) feeds it; `latency.rs` keeps the books.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Kind;
use crate::codecs::FrameCodec;
use crate::config::Config;
use crate::error::CodecError;
use crate::media::clock;
use crate::media::frame::{Frame, StreamInfo};
use crate::media::slot::Taken;
use crate::net::protocol::{self, ProtocolError, ServerHello};
use crate::registry;
use crate::secure::Tx;
use crate::sinks::input::SinkInput;
use crate::sinks::{Flow, FrameSink, StreamMeta};

use super::connect::Connection;
use super::latency::{LatencyLog, Stamps};
use super::reader::{self, Received, Shared};
use super::status::StatusLine;
use super::{Lost, ViewEnd, ViewError, ViewOptions, ViewReport};

/// How a session ended.
pub(crate) enum SessionEnd {
    Done(ViewEnd),
    /// The connection broke, or the server went away; maybe reconnect.
    Lost(Lost),
}

/// What every session of one `view` shares.
pub(crate) struct Setup<'a> {
    pub(crate) address: &'a str,
    pub(crate) cfg: &'a Config,
    pub(crate) opts: &'a ViewOptions,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) deadline: Option<Instant>,
}

/// Runs one session on `conn`; returns how it ended.
pub(crate) fn session(
    conn: Connection,
    setup: &Setup<'_>,
    sink: &mut dyn FrameSink,
    report: &mut ViewReport,
    log: Option<&mut LatencyLog>,
) -> Result<SessionEnd, ViewError> {
    let mut session = Session::open(conn, setup, sink, report)?;
    let result = session.run(setup, sink, report, log);
    session.close(report);
    result
}

/// Pings: five quick ones for a good first estimate, then one a second.
struct Pinger {
    sent: u64,
    next: Instant,
}

struct Session {
    hello: ServerHello,
    codec: Box<dyn FrameCodec>,
    input: SinkInput,
    info: StreamInfo,
    stream: TcpStream,
    tx: Tx<TcpStream>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    frame: Frame,
    status: StatusLine,
    last_seq: Option<u64>,
    pinger: Pinger,
}

impl Session {
    /// Sets up the codec the server names and the sink, and starts the reader.
    fn open(
        conn: Connection,
        setup: &Setup<'_>,
        sink: &mut dyn FrameSink,
        report: &mut ViewReport,
    ) -> Result<Session, ViewError> {
        let hello = conn.hello;
        let backend = registry::codec(&hello.codec)
            .map_err(|e| ViewError::UnknownCodec(hello.codec.clone(), e))?;
        let codec = (backend.open)(&setup.cfg.backend(Kind::Codec, &hello.codec))?;
        let max_payload = codec
            .max_payload(&hello.frame)
            .min(setup.opts.limits.max_frame_bytes);
        let decoded = StreamInfo {
            frame: codec.decoded_info(&hello.frame),
            fps: hello.fps,
        };
        let input = SinkInput::choose(sink, codec.payload_is_jpeg(&hello.frame), decoded)?;
        let info = input.info();
        report.stream = Some(info);
        log::info!(
            "connected to {}: \"{}\", {} at {} fps, codec {}",
            setup.address,
            hello.message,
            hello.frame,
            hello.fps,
            hello.codec
        );
        sink.start(&StreamMeta {
            info,
            name: hello.message.clone(),
            address: setup.address.to_string(),
            codec: hello.codec.clone(),
        })?;
        // A server that sends nothing for this long is considered gone.
        let silence = if hello.fps > 0.0 {
            (4.0 / hello.fps).max(5.0)
        } else {
            5.0
        };
        let _ = conn
            .stream
            .set_read_timeout(Some(Duration::from_secs_f64(silence)));
        let shared = Arc::new(Shared::new(conn.clock));
        let reader =
            reader::spawn(conn.rx, max_payload, &shared).map_err(|e| ViewError::Connection {
                address: setup.address.to_string(),
                source: Lost::Link(e.into()),
            })?;
        Ok(Session {
            hello,
            codec,
            input,
            info,
            stream: conn.stream,
            tx: conn.tx,
            shared,
            reader: Some(reader),
            frame: Frame::empty(),
            status: StatusLine::new(setup.opts.quiet),
            last_seq: None,
            pinger: Pinger {
                sent: 0,
                next: Instant::now(),
            },
        })
    }

    fn run(
        &mut self,
        setup: &Setup<'_>,
        sink: &mut dyn FrameSink,
        report: &mut ViewReport,
        mut log: Option<&mut LatencyLog>,
    ) -> Result<SessionEnd, ViewError> {
        loop {
            self.ping();
            if let Some(end) = finished(setup, report) {
                return Ok(SessionEnd::Done(end));
            }
            if let Some(r) = self
                .status
                .tick(&self.shared, &self.info, &self.hello.codec)
            {
                let _ = protocol::write_report(&mut self.tx, &r);
                if let Some(log) = log.as_mut() {
                    log.flush();
                }
            }
            let received = match self.shared.slot.take(Duration::from_millis(100)) {
                Taken::Value(received) => received,
                Taken::Timeout => match sink.idle()? {
                    Flow::Continue => continue,
                    Flow::Stop => return Ok(SessionEnd::Done(ViewEnd::SinkClosed)),
                },
                Taken::Closed => return Ok(self.reader_end()),
            };
            let stamps = match self.decode(received, setup.address) {
                Ok(Some(stamps)) => stamps,
                Ok(None) => continue,
                Err(e) => {
                    // A server that sends undecodable frames is broken: drop it.
                    log::error!("{}: frame {}: {e}", setup.address, self.frame.seq);
                    return Ok(SessionEnd::Lost(Lost::BadFrame(e)));
                }
            };
            if self.present(sink, stamps, report, log.as_deref_mut())? == Flow::Stop {
                return Ok(SessionEnd::Done(ViewEnd::SinkClosed));
            }
        }
    }

    fn ping(&mut self) {
        if Instant::now() < self.pinger.next {
            return;
        }
        // A failed write shows up in the reader as a broken connection.
        let _ = protocol::write_ping(&mut self.tx, self.pinger.sent, clock::now_us());
        self.pinger.sent += 1;
        // From now, not from when it was due: a stall sends one ping, not a burst.
        self.pinger.next = Instant::now()
            + if self.pinger.sent < 5 {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(1)
            };
    }

    /// Why the reader stopped, as the session's end.
    fn reader_end(&self) -> SessionEnd {
        match self.shared.take_end() {
            Some(Ok((message, true))) => SessionEnd::Done(ViewEnd::StreamEnded(message)),
            Some(Ok((message, false))) => SessionEnd::Lost(Lost::ServerGone(message)),
            Some(Err(e)) => SessionEnd::Lost(Lost::Link(e)),
            None => SessionEnd::Lost(Lost::Link(ProtocolError::Closed("by the peer"))),
        }
    }

    /// Decodes a received frame into the session's frame, in what the sink
    /// takes. `Ok(None)`: a camera's JPEG that does not decode, one bad
    /// picture skipped; `Err`: the server's payload does not decode.
    fn decode(&mut self, mut rx: Received, address: &str) -> Result<Option<Stamps>, CodecError> {
        let frame = &mut self.frame;
        frame.info = self.hello.frame;
        frame.seq = rx.header.seq;
        frame.capture_us = rx.header.capture_us;
        let decoded = if self.input.keeps_jpeg() {
            if rx.payload.starts_with(&[0xFF, 0xD8]) {
                frame.info = self.info.frame;
                std::mem::swap(&mut frame.data, &mut rx.payload);
                Ok(())
            } else {
                Err(CodecError::Corrupt {
                    codec: "jpeg",
                    why: "the payload does not start with a JPEG marker".into(),
                })
            }
        } else {
            self.codec.decode(&mut rx.payload, frame)
        };
        self.shared.recycle(rx.payload);
        decoded?;
        if let Some(p) = self.input.to_pixels() {
            if let Err(e) = p.decode(frame) {
                log::debug!("{address}: frame {}: {e}; skipped", rx.header.seq);
                self.shared.dropped_here.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
        }
        Ok(Some(Stamps {
            seq: rx.header.seq,
            captured_us: rx.header.capture_us,
            timing: rx.timing,
            ours_us: [rx.received_us, clock::now_us(), 0],
        }))
    }

    /// Presents the decoded frame and books its latency.
    fn present(
        &mut self,
        sink: &mut dyn FrameSink,
        mut stamps: Stamps,
        report: &mut ViewReport,
        log: Option<&mut LatencyLog>,
    ) -> Result<Flow, ViewError> {
        let (offset, rtt) = self.shared.clock().offset().unwrap_or((0, 0));
        let decoded_us = stamps.ours_us[1];
        self.status.live.server_clock_us = (decoded_us as i64 + offset).max(0) as u64;
        let presenting = Instant::now();
        let flow = sink.present(&self.frame, &self.status.live)?;
        stamps.ours_us[2] = clock::now_us();
        report
            .present
            .record(presenting.elapsed().as_micros() as u64);
        let moments = stamps.on_server(offset);
        let gap = self
            .last_seq
            .map_or(0, |last| self.frame.seq.saturating_sub(last + 1));
        self.last_seq = Some(self.frame.seq);
        report.latency.record(moments.latency_us());
        report.stages.record(&moments);
        report.clock = Some((offset, rtt));
        report.frames += 1;
        report.dropped_upstream += gap;
        self.status.presented(&moments, gap);
        if let Some(log) = log {
            log.row(&moments, (offset, rtt));
        }
        Ok(flow)
    }

    /// Ends the connection and the reader; adds the reader's counts.
    fn close(&mut self, report: &mut ViewReport) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        report.dropped_here += self.shared.dropped_here.load(Ordering::Relaxed);
        report.bytes += self.shared.bytes.load(Ordering::Relaxed);
    }
}

/// An end condition of the whole `view`, checked between frames.
fn finished(setup: &Setup<'_>, report: &ViewReport) -> Option<ViewEnd> {
    if setup.stop.load(Ordering::Relaxed) {
        Some(ViewEnd::Stopped)
    } else if setup.deadline.is_some_and(|d| Instant::now() >= d) {
        Some(ViewEnd::Duration)
    } else if setup.opts.frames.is_some_and(|n| report.frames >= n) {
        Some(ViewEnd::FrameLimit)
    } else {
        None
    }
}
