//! Sinks on the server itself: a preview window, a recording. Each is fed from the
//! same capture as the network viewers, through its own newest-wins slot on its
//! own thread (`sink-NAME`), so a slow window or disk drops frames for itself
//! only (counted in `/stats`) and never delays capture or any viewer. A sink that
//! fails or is closed ends alone; the server goes on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Kind;
use crate::config::Config;
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
use crate::media::slot::Taken;
use crate::registry;
use crate::server::{Hub, Protocol, ServeError, Viewer};
use crate::sinks::{Flow, FrameSink, Live, StreamMeta};

/// One local sink, as the stats see it.
pub(crate) struct LocalSink {
    pub(crate) name: String,
    pub(crate) viewer: Arc<Viewer>,
    pub(crate) presented: AtomicU64,
    /// Why it stopped, when it failed.
    pub(crate) failed: Mutex<Option<String>>,
    pub(crate) running: AtomicBool,
}

/// A local sink in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalSinkStats {
    pub name: String,
    /// Frames the sink took.
    pub presented: u64,
    /// Frames it missed because it was still busy with an older one.
    pub dropped: u64,
    pub running: bool,
    pub failed: Option<String>,
}

impl LocalSink {
    pub(crate) fn stats(&self) -> LocalSinkStats {
        LocalSinkStats {
            name: self.name.clone(),
            presented: self.presented.load(Ordering::Relaxed),
            dropped: self.viewer.counters.dropped.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            failed: self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Opens sink `name` on a new thread (sinks are not `Send`: a window stays on the
/// thread that made it) and feeds it until the server stops. Returns once the
/// sink has opened, or with the reason it could not.
pub(crate) fn start(
    name: &str,
    cfg: &Config,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ServeError> {
    let backend = registry::sink(name)?;
    let state = Arc::new(LocalSink {
        name: name.to_string(),
        viewer: Viewer::new(SocketAddr::from(([0, 0, 0, 0], 0)), Protocol::Local),
        presented: AtomicU64::new(0),
        failed: Mutex::new(None),
        running: AtomicBool::new(true),
    });
    let (opened, answer) = mpsc::sync_channel(1);
    let thread = {
        let (cfg, hub, stop, state) = (cfg.clone(), hub.clone(), stop.clone(), state.clone());
        std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let mut sink = match (backend.open)(&cfg.backend(Kind::Sink, &state.name)) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                // Started and subscribed before the server goes on to start
                // capture: a recording holds the very first frame.
                let given = match begin(sink.as_mut(), &hub, &state) {
                    Ok(given) => given,
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let _ = opened.send(Ok(()));
                feed(sink, given, &hub, &stop, &state);
            })
            .map_err(ServeError::Thread)?
    };
    let why = match answer.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {
            hub.locals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(state);
            return Ok(thread);
        }
        // A mistake in its table is a configuration error, with its place.
        Ok(Err(crate::error::BackendError::Config(e))) => {
            let _ = thread.join();
            return Err(ServeError::Backend(e.into()));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "did not open within 30 s".into(),
    };
    let _ = thread.join();
    Err(ServeError::LocalSink {
        name: name.to_string(),
        why,
    })
}

/// What a local sink is given: the stream's JPEG as the viewers get it (a
/// recording, when the stream is JPEG) or the captured pixels.
fn stream_for(sink: &dyn FrameSink, hub: &Hub) -> (bool, crate::media::frame::StreamInfo) {
    let jpeg = sink.takes_jpeg() && hub.payload_is_jpeg;
    let mut info = hub.stream;
    if jpeg {
        info.frame = FrameInfo {
            format: PixelFormat::Jpeg,
            stride: 0,
            ..info.frame
        };
    } else if info.frame.format == PixelFormat::Jpeg && !sink.accepts_jpeg() {
        // An MJPEG camera's frames, decoded for a sink that needs pixels.
        if let Ok(info_rgb) =
            FrameInfo::packed(PixelFormat::Rgb24, info.frame.width, info.frame.height)
        {
            info.frame = info_rgb;
        }
    }
    (jpeg, info)
}

/// Starts the sink on the stream and subscribes it to the capture; returns what
/// it is given (see [`stream_for`]).
fn begin(
    sink: &mut dyn FrameSink,
    hub: &Hub,
    state: &LocalSink,
) -> Result<(bool, crate::media::frame::StreamInfo), crate::error::BackendError> {
    let (jpeg, info) = stream_for(sink, hub);
    sink.start(&StreamMeta {
        info,
        name: hub.name.clone(),
        address: "this machine".into(),
        codec: hub.codec.clone(),
    })
    .map_err(|e| crate::error::BackendError::Invalid {
        what: format!("local sink {}", state.name),
        why: e.to_string(),
    })?;
    hub.main.lock().push(state.viewer.clone());
    Ok((jpeg, info))
}

/// The sink thread: newest packet → sink, until the server stops or the sink ends.
fn feed(
    mut sink: Box<dyn FrameSink>,
    (jpeg, info): (bool, crate::media::frame::StreamInfo),
    hub: &Hub,
    stop: &AtomicBool,
    state: &LocalSink,
) {
    let name = &state.name;
    let fail = |why: String| {
        log::error!("local sink {name} stopped: {why}; viewers go on");
        *state.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    let mut scratch = Frame::empty();
    let mut to_pixels = if hub.stream.frame.format == PixelFormat::Jpeg && !sink.accepts_jpeg() {
        match crate::codecs::jpeg::JpegToPixels::new() {
            Ok(p) => Some(p),
            Err(e) => {
                fail(e.to_string());
                state.running.store(false, Ordering::Relaxed);
                hub.main.remove(&state.viewer);
                return;
            }
        }
    } else {
        None
    };
    let mut live = Live::default();
    let mut meter = (Instant::now(), 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let flow = match state.viewer.slot.take(Duration::from_millis(100)) {
            Taken::Value(packet) => {
                let mut decoded = Ok(());
                let frame = if jpeg && packet.frame.info.format != PixelFormat::Jpeg {
                    scratch.info = info.frame;
                    scratch.seq = packet.frame.seq;
                    scratch.capture_us = packet.frame.capture_us;
                    scratch.data.clear();
                    scratch.data.extend_from_slice(packet.payload());
                    &scratch
                } else if let Some(p) = to_pixels.as_mut() {
                    decoded = p.decode_into(&packet.frame, &mut scratch);
                    &scratch
                } else {
                    &packet.frame
                };
                if let Err(e) = decoded {
                    // One bad camera frame: skipped, the preview goes on.
                    log::debug!("local sink {name}: frame {}: {e}", packet.frame.seq);
                    continue;
                }
                live.latency_ms =
                    crate::media::clock::now_us().saturating_sub(frame.capture_us) as f64 / 1000.0;
                let presented = sink.present(frame, &live);
                if presented.is_ok() {
                    state.presented.fetch_add(1, Ordering::Relaxed);
                    state.viewer.sent(&packet, packet.payload().len());
                }
                presented
            }
            Taken::Timeout => sink.idle(),
            Taken::Closed => break,
        };
        if meter.0.elapsed() >= Duration::from_secs(1) {
            let n = state.presented.load(Ordering::Relaxed);
            let d = state.viewer.counters.dropped.load(Ordering::Relaxed);
            live.fps = (n - meter.1) as f64 / meter.0.elapsed().as_secs_f64();
            live.dropped = d - meter.2;
            meter = (Instant::now(), n, d);
        }
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => {
                log::info!("local sink {name} closed; the server goes on");
                break;
            }
            Err(e) => {
                fail(e.to_string());
                break;
            }
        }
    }
    hub.main.remove(&state.viewer);
    state.running.store(false, Ordering::Relaxed);
    if let Err(e) = sink.finish() {
        fail(e.to_string());
    }
}
