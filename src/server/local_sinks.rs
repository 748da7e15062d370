//! Sinks on the server itself: a preview window, a recording. Each is fed from the
//! same capture as the network viewers, through its own newest-wins slot on its
//! own thread (`sink-NAME`), so a slow window or disk drops frames for itself
//! only (counted in `/stats`) and never delays capture or any viewer. A sink that
//! fails or is closed ends alone; the server goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::Kind;
use crate::config::Config;
use crate::error::{BackendError, CodecError, SinkError};
use crate::media::clock;
use crate::media::frame::Frame;
use crate::media::slot::Taken;
use crate::registry;
use crate::sinks::input::SinkInput;
use crate::sinks::{Flow, FrameSink, Live, StreamMeta};

use super::hub::{EncodedFrame, Hub, LocalSink, Subscriber, SubscriberKind, Subscription};
use super::send::Chain;
use super::ServeError;

/// How long a sink may take to open (a window: the display's answer).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a sink on the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalSinkError {
    #[error(transparent)]
    Open(BackendError),
    #[error("cannot start on the stream: {0}")]
    Start(#[source] SinkError),
    #[error("did not open within {} s", OPEN_TIMEOUT.as_secs())]
    Timeout,
}

/// Opens sink `name` on a new thread (sinks are not `Send`: a window stays on the
/// thread that made it) and feeds it until the server stops. Returns once the
/// sink has opened, or with the reason it could not; its thread goes into
/// `threads` as soon as it is spawned, for the caller to join either way. A
/// sink that opens after its time is up is told to close at once (`cancel`), so
/// joining never waits for more than its open.
pub(crate) fn start(
    name: &str,
    cfg: &Config,
    hub: &Arc<Hub>,
    stop: &Arc<AtomicBool>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), ServeError> {
    let backend = registry::sink(name)?;
    let state = Arc::new(LocalSink {
        name: name.to_string(),
        viewer: Subscriber::internal(SubscriberKind::Local),
        presented: AtomicU64::new(0),
        failed: Mutex::new(None),
        running: AtomicBool::new(true),
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let (opened, answer) = mpsc::sync_channel(1);
    let thread = {
        let (cfg, hub, stop, state) = (cfg.clone(), hub.clone(), stop.clone(), state.clone());
        let cancel = cancel.clone();
        std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let sink = (backend.open)(&cfg.backend(Kind::Sink, &state.name));
                run(sink, &hub, &state, &[&stop, &cancel], opened)
            })
            .map_err(ServeError::Thread)?
    };
    threads.push(thread);
    let source = match answer.recv_timeout(OPEN_TIMEOUT) {
        Ok(Ok(())) => {
            hub.locals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(state);
            return Ok(());
        }
        // A mistake in its table is a configuration error, with its place.
        Ok(Err(LocalSinkError::Open(BackendError::Config(e)))) => {
            return Err(ServeError::Backend(e.into()))
        }
        Ok(Err(e)) => e,
        Err(_) => {
            cancel.store(true, Ordering::SeqCst);
            LocalSinkError::Timeout
        }
    };
    Err(ServeError::LocalSink {
        name: name.to_string(),
        source: Box::new(source),
    })
}

/// The sink thread's body: starts the opened sink, says so through `opened`,
/// and feeds it until one of `stops` is set or the sink ends.
fn run(
    sink: Result<Box<dyn FrameSink>, BackendError>,
    hub: &Hub,
    state: &LocalSink,
    stops: &[&AtomicBool; 2],
    opened: mpsc::SyncSender<Result<(), LocalSinkError>>,
) {
    let mut sink = match sink {
        Ok(s) => s,
        Err(e) => {
            state.running.store(false, Ordering::Relaxed);
            let _ = opened.send(Err(LocalSinkError::Open(e)));
            return;
        }
    };
    // Started and subscribed before the server goes on to start capture: a
    // recording holds the very first frame.
    let started = begin(sink.as_mut(), hub, state);
    let (input, subscription) = match started {
        Ok(s) => s,
        Err(e) => {
            state.running.store(false, Ordering::Relaxed);
            let _ = opened.send(Err(e));
            return;
        }
    };
    // Too late: the server has given up on this sink.
    if opened.send(Ok(())).is_err() || stops[1].load(Ordering::SeqCst) {
        drop(subscription);
        state.running.store(false, Ordering::Relaxed);
        let _ = sink.finish();
        return;
    }
    feed(sink, input, hub, stops[0], state);
    drop(subscription);
}

/// Starts the sink on the stream as it will get it, and subscribes it to the
/// capture.
fn begin<'h>(
    sink: &mut dyn FrameSink,
    hub: &'h Hub,
    state: &LocalSink,
) -> Result<(SinkInput, Subscription<'h>), LocalSinkError> {
    let input =
        SinkInput::choose(sink, hub.payload_format, hub.stream).map_err(LocalSinkError::Open)?;
    // A recording that keeps an H.264 stream as it came, or a window that
    // decodes an H.264 camera's, needs every frame of the chain.
    state
        .viewer
        .chained
        .store(input.follows_chain(), Ordering::Relaxed);
    sink.start(&StreamMeta {
        info: input.info(),
        name: hub.name.clone(),
        address: "this machine".into(),
        codec: hub.codec.clone(),
    })
    .map_err(LocalSinkError::Start)?;
    Ok((input, hub.main.subscribe(&state.viewer)))
}

/// The frame `sink` is given for `frame`: the payload as it came, the captured
/// pixels, or those decoded from a camera's JPEG or H.264 (into `scratch`).
fn picture<'a>(
    input: &mut SinkInput,
    frame: &'a EncodedFrame,
    scratch: &'a mut Frame,
) -> Result<&'a Frame, CodecError> {
    if input.keeps().is_some_and(|f| f != frame.frame.info.format) {
        scratch.info = input.info().frame;
        scratch.seq = frame.frame.seq;
        scratch.capture_us = frame.frame.capture_us;
        scratch.data.clear();
        scratch.data.extend_from_slice(frame.payload());
        return Ok(scratch);
    }
    match input.to_pixels() {
        Some(p) => {
            p.decode_into(&frame.frame, scratch)?;
            Ok(scratch)
        }
        None => Ok(&frame.frame),
    }
}

/// The sink thread's loop: newest frame → sink, until the server stops or the
/// sink ends.
fn feed(
    mut sink: Box<dyn FrameSink>,
    mut input: SinkInput,
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
    let mut live = Live::default();
    let mut meter = (Instant::now(), 0u64, 0u64);
    // A recording of the stream as it came follows the encoder's chain as a
    // viewer does: after a frame it missed, nothing until a keyframe.
    let mut chain = state
        .viewer
        .chained
        .load(Ordering::Relaxed)
        .then(Chain::new);
    while !stop.load(Ordering::Relaxed) {
        let flow = match state.viewer.slot.take(Duration::from_millis(100)) {
            Taken::Value(frame)
                if chain
                    .as_mut()
                    .is_some_and(|c| !c.admits(&frame, &hub.keyframes, Instant::now())) =>
            {
                state.viewer.dropped();
                continue;
            }
            Taken::Value(frame) => match picture(&mut input, &frame, &mut scratch) {
                Ok(picture) => {
                    live.latency_ms =
                        clock::now_us().saturating_sub(picture.capture_us) as f64 / 1000.0;
                    let presented = sink.present(picture, &live);
                    if presented.is_ok() {
                        if let Some(c) = chain.as_mut() {
                            c.sent(&frame);
                        }
                        state.presented.fetch_add(1, Ordering::Relaxed);
                        state.viewer.sent(&frame, frame.payload().len());
                    }
                    presented
                }
                Err(e) => {
                    // One bad camera frame: skipped, the preview goes on (from
                    // the next keyframe, if the frames depend on each other).
                    log::debug!("local sink {name}: frame {}: {e}", frame.frame.seq);
                    state.viewer.dropped();
                    if let Some(c) = chain.as_mut() {
                        c.lost(&hub.keyframes, Instant::now());
                    }
                    continue;
                }
            },
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
    state.running.store(false, Ordering::Relaxed);
    if let Err(e) = sink.finish() {
        fail(e.to_string());
    }
}
