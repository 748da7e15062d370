//! One connection's session on the calling thread: the newest decoded picture
//! → present, with a ping a second and the status line, until an end
//! condition, the sink's end or the connection's. The `net-reader` thread
//! (`reader.rs`) reads and decodes for it; `latency.rs` keeps the books.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Kind;
use crate::config::Config;
use crate::media::clock;
use crate::media::frame::StreamInfo;
use crate::media::slot::Taken;
use crate::net::protocol::{self, ProtocolError, ServerHello};
use crate::registry;
use crate::secure::Tx;
use crate::sinks::input::SinkInput;
use crate::sinks::{Flow, FrameSink, StreamMeta};

use super::connect::Connection;
use super::latency::LatencyLog;
use super::reader::{self, Decoding, Picture, ReadEnd, Shared};
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
/// `connecting`: when the connection was begun.
pub(crate) fn session(
    conn: Connection,
    connecting: Instant,
    setup: &Setup<'_>,
    sink: &mut dyn FrameSink,
    report: &mut ViewReport,
    log: Option<&mut LatencyLog>,
) -> Result<SessionEnd, ViewError> {
    let mut session = Session::open(conn, setup, sink, report)?;
    session.connecting = connecting;
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
    info: StreamInfo,
    stream: TcpStream,
    /// The link's writing half; the reader writes keyframe requests on it too.
    tx: Arc<Mutex<Tx<TcpStream>>>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    status: StatusLine,
    pinger: Pinger,
    connecting: Instant,
    /// When the last picture was presented.
    last_presented: Option<Instant>,
}

impl Session {
    /// Sets up the codec the server names and the sink, and starts the reader
    /// (which decodes).
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
        let input = SinkInput::choose(sink, codec.payload_format(&hello.frame), decoded)?;
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
        let tx = Arc::new(Mutex::new(conn.tx));
        let decoding = Decoding::new(codec, input, hello.frame, tx.clone());
        let reader = reader::spawn(conn.rx, max_payload, decoding, &shared).map_err(|e| {
            ViewError::Connection {
                address: setup.address.to_string(),
                source: Lost::Link(e.into()),
            }
        })?;
        Ok(Session {
            hello,
            info,
            stream: conn.stream,
            tx,
            shared,
            reader: Some(reader),
            status: StatusLine::new(setup.opts.quiet),
            pinger: Pinger {
                sent: 0,
                next: Instant::now(),
            },
            connecting: Instant::now(),
            last_presented: None,
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
                let _ = protocol::write_report(&mut *self.lock_tx(), &r);
                if let Some(log) = log.as_mut() {
                    log.flush();
                }
            }
            let picture = match self.shared.slot.take(Duration::from_millis(100)) {
                Taken::Value(picture) => picture,
                Taken::Timeout => match sink.idle()? {
                    Flow::Continue => continue,
                    Flow::Stop => return Ok(SessionEnd::Done(ViewEnd::SinkClosed)),
                },
                Taken::Closed => return Ok(self.reader_end(setup.address)),
            };
            if self.present(sink, picture, report, log.as_deref_mut())? == Flow::Stop {
                return Ok(SessionEnd::Done(ViewEnd::SinkClosed));
            }
        }
    }

    fn ping(&mut self) {
        if Instant::now() < self.pinger.next {
            return;
        }
        // A failed write shows up in the reader as a broken connection.
        let _ = protocol::write_ping(&mut *self.lock_tx(), self.pinger.sent, clock::now_us());
        self.pinger.sent += 1;
        // From now, not from when it was due: a stall sends one ping, not a burst.
        self.pinger.next = Instant::now()
            + if self.pinger.sent < 5 {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(1)
            };
    }

    fn lock_tx(&self) -> std::sync::MutexGuard<'_, Tx<TcpStream>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the reader stopped, as the session's end.
    fn reader_end(&self, address: &str) -> SessionEnd {
        match self.shared.take_end() {
            Some(ReadEnd::Ended {
                message,
                final_: true,
            }) => SessionEnd::Done(ViewEnd::StreamEnded(message)),
            Some(ReadEnd::Ended { message, .. }) => SessionEnd::Lost(Lost::ServerGone(message)),
            Some(ReadEnd::Failed(e)) => SessionEnd::Lost(Lost::Link(e)),
            Some(ReadEnd::BadFrame(e)) => {
                // A server that sends undecodable frames is broken: drop it.
                log::error!("{address}: {e}");
                SessionEnd::Lost(Lost::BadFrame(e))
            }
            None => SessionEnd::Lost(Lost::Link(ProtocolError::Closed("by the peer"))),
        }
    }

    /// Presents a decoded picture, books its latency, and gives its buffer
    /// back to the reader.
    fn present(
        &mut self,
        sink: &mut dyn FrameSink,
        picture: Picture,
        report: &mut ViewReport,
        log: Option<&mut LatencyLog>,
    ) -> Result<Flow, ViewError> {
        let Picture { frame, mut stamps } = picture;
        let (offset, rtt) = self.shared.clock().offset().unwrap_or((0, 0));
        let decoded_us = stamps.ours_us[1];
        self.status.live.server_clock_us = (decoded_us as i64 + offset).max(0) as u64;
        let presenting = Instant::now();
        let flow = sink.present(&frame, &self.status.live);
        self.shared.recycle(frame);
        let flow = flow?;
        stamps.ours_us[2] = clock::now_us();
        report
            .present
            .record(presenting.elapsed().as_micros() as u64);
        let moments = stamps.on_server(offset);
        report.latency.record(moments.latency_us());
        report.stages.record(&moments);
        report.clock = Some((offset, rtt));
        report.frames += 1;
        let now = Instant::now();
        match self.last_presented.replace(now) {
            None if report.first_picture.is_none() => {
                report.first_picture = Some(now - self.connecting);
            }
            None => {}
            Some(last) => report.longest_gap = report.longest_gap.max(now - last),
        }
        self.status.presented(&moments);
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
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        report.dropped_here += count(&self.shared.dropped_here);
        report.dropped_upstream += count(&self.shared.dropped_upstream);
        report.waited_for_keyframe += count(&self.shared.waited);
        report.keyframes_asked += count(&self.shared.keyframes_asked);
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
