//! `nokhwa`: cameras through the `nokhwa` crate (on Linux, its V4L2 input), the
//! second camera backend, tried by `source = "auto"` after `v4l2`.
//!
//! nokhwa's frame call waits without a timeout and its stream panics on some
//! teardown errors, so the camera lives on its own thread (`nokhwa-capture`),
//! every nokhwa call is fenced against panics, and frames come over a
//! newest-wins slot that is read with a timeout. nokhwa copies each frame into a
//! buffer of its own (one allocation per frame, inside the crate); the `v4l2`
//! backend does not, and is the one to use where both work.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use serde::Deserialize;
use toml::Spanned;

use super::camera::{CameraInfo, CameraMode, Reopen, Supervised};
use super::{FrameSource, SourceBackend};
use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::backend::Availability;
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, FrameInfo, GeometryError, Limits, PixelFormat, StreamInfo};
use crate::media::slot::{Slot, Taken};

inventory::submit! {
    SourceBackend {
        name: "nokhwa",
        summary: "cameras through the nokhwa crate (second choice after v4l2)",
        probe,
        open,
        devices: Some(list),
    }
}

fn probe() -> Availability {
    match fenced(|| nokhwa::query(ApiBackend::Auto)) {
        Ok(Ok(list)) if !list.is_empty() => Availability::Available,
        _ => Availability::Unavailable("nokhwa finds no camera".into()),
    }
}

/// Why a nokhwa camera failed: kept whole, it travels from the
/// `nokhwa-capture` thread and becomes the cause of a [`BackendError::Library`]
/// or [`SourceError::Library`].
#[derive(Debug, thiserror::Error)]
enum NokhwaFailure {
    /// nokhwa returned an error.
    #[error("{0}")]
    Nokhwa(#[source] nokhwa::NokhwaError),
    /// nokhwa panicked (its message, when it had one).
    #[error("nokhwa panicked: {0}")]
    Panicked(String),
    /// The camera gave a mode livestream cannot stream.
    #[error("{0}")]
    Geometry(#[source] GeometryError),
}

/// Runs a nokhwa call, turning a panic inside the crate into an error.
fn fenced<T>(f: impl FnOnce() -> T) -> Result<T, NokhwaFailure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        NokhwaFailure::Panicked(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
        )
    })
}

/// Runs a fallible nokhwa call, fenced against panics.
fn fenced_call<T>(f: impl FnOnce() -> Result<T, nokhwa::NokhwaError>) -> Result<T, NokhwaFailure> {
    fenced(f)?.map_err(NokhwaFailure::Nokhwa)
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// Camera index as nokhwa numbers them (0: the first); default 0.
    index: Option<u32>,
    /// Seconds without a frame before the camera counts as lost (default 3).
    timeout: Option<Spanned<f64>>,
}

fn to_format(f: FrameFormat) -> PixelFormat {
    match f {
        FrameFormat::MJPEG => PixelFormat::Jpeg,
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::GRAY => PixelFormat::Grey,
        FrameFormat::RAWRGB => PixelFormat::Rgb24,
        FrameFormat::RAWBGR => PixelFormat::Bgr24,
    }
}

fn from_format(f: PixelFormat) -> Option<FrameFormat> {
    [
        FrameFormat::MJPEG,
        FrameFormat::YUYV,
        FrameFormat::NV12,
        FrameFormat::GRAY,
        FrameFormat::RAWRGB,
        FrameFormat::RAWBGR,
    ]
    .into_iter()
    .find(|&n| to_format(n) == f)
}

fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let opts: Options = table.parse()?;
    let timeout = super::camera::timeout_option(table, &opts.timeout)?;
    let index = opts.index.unwrap_or(0);
    let capture = *capture;
    let camera = NokhwaSource::start(index, capture, timeout)?;
    let reopen: Reopen = Box::new(move || {
        Ok(Box::new(NokhwaSource::start(index, capture, timeout)?) as Box<dyn FrameSource>)
    });
    Supervised::new(format!("nokhwa camera {index}"), Box::new(camera), reopen)
        .map(|s| Box::new(s) as Box<dyn FrameSource>)
}

/// The camera on its thread, and the slot its newest frame waits in.
struct NokhwaSource {
    info: StreamInfo,
    slot: Arc<Slot<Result<Frame, NokhwaFailure>>>,
    spare: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
    last_frame: Instant,
}

impl NokhwaSource {
    fn start(
        index: u32,
        capture: CaptureConfig,
        timeout: Duration,
    ) -> Result<NokhwaSource, BackendError> {
        let slot: Arc<Slot<Result<Frame, NokhwaFailure>>> = Arc::new(Slot::default());
        let spare: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (opened, answer) = mpsc::sync_channel(1);
        let thread = {
            let (slot, spare, stop) = (slot.clone(), spare.clone(), stop.clone());
            std::thread::Builder::new()
                .name("nokhwa-capture".into())
                .spawn(move || capture_thread(index, capture, opened, &slot, &spare, &stop))
                .map_err(|e| BackendError::io("starting the nokhwa-capture thread", e))?
        };
        let what = format!("nokhwa camera {index}");
        match answer.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(info)) => Ok(NokhwaSource {
                info,
                slot,
                spare,
                stop,
                thread: Some(thread),
                timeout,
                last_frame: Instant::now(),
            }),
            Ok(Err(cause)) => {
                let _ = thread.join();
                Err(BackendError::Library {
                    what,
                    source: Box::new(cause),
                })
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(BackendError::Invalid {
                    what,
                    why: "did not open within 30 s".into(),
                })
            }
        }
    }
}

/// Opens the camera and then copies its frames into the slot until told to stop
/// or the camera fails (the failure goes into the slot).
fn capture_thread(
    index: u32,
    capture: CaptureConfig,
    opened: mpsc::SyncSender<Result<StreamInfo, NokhwaFailure>>,
    slot: &Slot<Result<Frame, NokhwaFailure>>,
    spare: &Mutex<Vec<Frame>>,
    stop: &AtomicBool,
) {
    let (mut camera, info) = match open_camera(index, capture) {
        Ok(opened) => opened,
        Err(cause) => {
            let _ = opened.send(Err(cause));
            return;
        }
    };
    let _ = opened.send(Ok(info));
    while !stop.load(Ordering::Relaxed) {
        let buffer = match fenced_call(|| camera.frame()) {
            Ok(b) => b,
            Err(cause) => {
                slot.put(Err(cause));
                break;
            }
        };
        let bytes = buffer.buffer();
        let Some(n) = usable_len(info.frame, bytes) else {
            log::debug!(
                "nokhwa: a short or broken frame ({} bytes) skipped",
                bytes.len()
            );
            continue;
        };
        let mut frame = spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(Frame::empty);
        frame.info = info.frame;
        frame.data.clear();
        frame.data.extend_from_slice(&bytes[..n]);
        frame.capture_us = crate::media::clock::now_us();
        if let Some(Ok(stale)) = slot.put(Ok(frame)) {
            spare.lock().unwrap_or_else(|p| p.into_inner()).push(stale);
        }
    }
    // nokhwa's stream may panic while stopping a camera that went away.
    let _ = fenced(move || drop(camera));
}

/// Opens camera `index` in the mode nearest to `capture` and starts its stream;
/// returns it with the frames it gives (checked against the limits).
fn open_camera(
    index: u32,
    capture: CaptureConfig,
) -> Result<(nokhwa::Camera, StreamInfo), NokhwaFailure> {
    let wanted = CameraFormat::new(
        Resolution::new(capture.width, capture.height),
        from_format(capture.format).unwrap_or(FrameFormat::YUYV),
        if capture.fps > 0.0 {
            capture.fps.round() as u32
        } else {
            30
        },
    );
    let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
    let mut camera = fenced_call(|| nokhwa::Camera::new(CameraIndex::Index(index), requested))?;
    fenced_call(|| camera.open_stream())?;
    let got = camera.camera_format();
    let format = to_format(got.format());
    let (w, h) = (got.resolution().width(), got.resolution().height());
    let info = FrameInfo::packed(format, w, h).and_then(|i| {
        i.validate(&Limits::default())?;
        Ok(i)
    });
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            let _ = fenced(move || drop(camera));
            return Err(NokhwaFailure::Geometry(e));
        }
    };
    log::info!(
        "nokhwa: camera {index} \"{}\": {info} at {} fps",
        camera.info().human_name(),
        got.frame_rate()
    );
    let fps = got.frame_rate() as f64;
    Ok((camera, StreamInfo { frame: info, fps }))
}

/// How many bytes of a nokhwa buffer make the frame, or `None` for one to skip:
/// a JPEG without its start marker, or raw pixels short of the geometry.
fn usable_len(info: FrameInfo, bytes: &[u8]) -> Option<usize> {
    if info.format == PixelFormat::Jpeg {
        (bytes.len() >= 4 && bytes[..2] == [0xFF, 0xD8]).then_some(bytes.len())
    } else {
        (bytes.len() >= info.byte_len()).then_some(info.byte_len())
    }
}

impl FrameSource for NokhwaSource {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let since = self.last_frame.elapsed();
        let lost = |what: String, kind: std::io::ErrorKind| SourceError::Io {
            what,
            source: kind.into(),
        };
        if since >= self.timeout {
            return Err(lost(
                format!("nokhwa: no frame for {:.1} s", since.as_secs_f64()),
                std::io::ErrorKind::TimedOut,
            ));
        }
        let wait = (self.timeout - since).min(Duration::from_secs(1));
        match self.slot.take(wait) {
            Taken::Value(Ok(mut got)) => {
                std::mem::swap(frame, &mut got);
                // The caller's old buffer goes back for the next frame.
                self.spare
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(got);
                self.last_frame = Instant::now();
                Ok(())
            }
            Taken::Value(Err(cause)) => Err(SourceError::Library {
                what: "nokhwa".into(),
                source: Box::new(cause),
            }),
            Taken::Timeout => Err(SourceError::Timeout(wait)),
            Taken::Closed => Err(lost(
                "nokhwa: capture ended".into(),
                std::io::ErrorKind::Other,
            )),
        }
    }
}

impl Drop for NokhwaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The thread ends after its current frame; a camera that hangs inside
        // nokhwa's untimed wait keeps it, so wait a bounded time only.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            log::error!(
                "nokhwa-capture is stuck inside nokhwa (a camera that stopped sending): \
                 left running; the v4l2 source does not have this problem"
            );
        }
    }
}

fn list(_controls: bool) -> Vec<CameraInfo> {
    let Ok(Ok(cameras)) = fenced(|| nokhwa::query(ApiBackend::Auto)) else {
        return Vec::new();
    };
    cameras
        .into_iter()
        .filter_map(|info| {
            let CameraIndex::Index(index) = info.index().clone() else {
                return None;
            };
            let modes = fenced(|| {
                let mut cam = nokhwa::Camera::new(
                    CameraIndex::Index(index),
                    RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
                )
                .ok()?;
                let mut modes = Vec::new();
                for fourcc in cam.compatible_fourcc().ok()? {
                    let Ok(sizes) = cam.compatible_list_by_resolution(fourcc) else {
                        continue;
                    };
                    let mut sizes: Vec<_> = sizes.into_iter().collect();
                    sizes.sort_by_key(|(r, _)| std::cmp::Reverse(r.width() * r.height()));
                    for (res, mut rates) in sizes {
                        rates.sort_unstable_by(|a, b| b.cmp(a));
                        modes.push(CameraMode {
                            format: to_format(fourcc),
                            width: res.width(),
                            height: res.height(),
                            fps: rates.into_iter().map(f64::from).collect(),
                        });
                    }
                }
                Some(modes)
            })
            .ok()
            .flatten()
            .unwrap_or_default();
            Some(CameraInfo {
                backend: "nokhwa",
                node: format!("index {index}"),
                option: "index",
                stable_id: index.to_string(),
                name: info.human_name(),
                detail: info.description().to_string(),
                modes,
                other_formats: Vec::new(),
                controls: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_frames_are_taken() {
        let raw = FrameInfo::packed(PixelFormat::Yuyv, 4, 2).unwrap();
        assert_eq!(usable_len(raw, &[7; 20]), Some(16), "padding left out");
        assert_eq!(usable_len(raw, &[7; 16]), Some(16));
        assert_eq!(usable_len(raw, &[7; 15]), None, "short");
        let jpeg = FrameInfo {
            format: PixelFormat::Jpeg,
            width: 4,
            height: 2,
            stride: 0,
        };
        assert_eq!(usable_len(jpeg, &[0xFF, 0xD8, 1, 2, 3]), Some(5));
        assert_eq!(usable_len(jpeg, &[0, 0xD8, 1, 2, 3]), None, "no SOI");
        assert_eq!(usable_len(jpeg, &[0xFF, 0xD8, 1]), None, "too short");
    }

    #[test]
    fn nokhwa_errors_are_kept_as_the_cause() {
        let cause = NokhwaFailure::Nokhwa(nokhwa::NokhwaError::ReadFrameError("gone".into()));
        let e = SourceError::Library {
            what: "nokhwa".into(),
            source: Box::new(cause),
        };
        let kept = std::error::Error::source(&e)
            .and_then(|c| c.downcast_ref::<NokhwaFailure>())
            .expect("the nokhwa failure is the source");
        assert!(matches!(
            kept,
            NokhwaFailure::Nokhwa(nokhwa::NokhwaError::ReadFrameError(_))
        ));
        assert_eq!(e.to_string(), "nokhwa: Could not capture frame: gone");
        let panicked = fenced(|| -> u8 { panic!("inside nokhwa") }).unwrap_err();
        assert_eq!(panicked.to_string(), "nokhwa panicked: inside nokhwa");
    }
}
