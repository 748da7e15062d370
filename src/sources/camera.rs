//! What every camera backend shares: the "no signal" frame, the supervisor that
//! reopens a camera that went away, the device listing that `livestream devices`
//! prints, and the control names used in `livestream.toml`.
//!
//! Not a backend itself: `v4l2` and `nokhwa` build on it.

use std::fmt;
use std::time::{Duration, Instant};

use super::FrameSource;
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};

/// How often a camera that went away is looked for again, and how often a
/// "no signal" frame goes out meanwhile.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One camera found by a backend, for `livestream devices`.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    /// The backend that found it (`v4l2`, `nokhwa`).
    pub backend: &'static str,
    /// The device node or index it was found at (`/dev/video0`).
    pub node: String,
    /// The backend option that selects a camera (`device`, `index`) ...
    pub option: &'static str,
    /// ... and its value for this one: it opens this camera again even after it
    /// is unplugged and comes back under another node, where the backend can.
    pub stable_id: String,
    /// Human name (the driver's card name).
    pub name: String,
    /// Driver and bus, for telling two identical cameras apart.
    pub detail: String,
    /// Every mode in a format livestream takes, best first.
    pub modes: Vec<CameraMode>,
    /// Formats the device offers that livestream does not take (four-character codes).
    pub other_formats: Vec<String>,
    /// Filled only when controls were asked for.
    pub controls: Vec<ControlInfo>,
}

/// One size of one format, with the frame rates offered for it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraMode {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Offered frame rates, highest first; empty when the device does not say.
    pub fps: Vec<f64>,
}

/// One control (brightness, exposure, ...), as the device describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlInfo {
    /// The name used in `[sources.v4l2.controls]`: see [`control_key`].
    pub key: String,
    pub kind: ControlKind,
    pub min: i64,
    pub max: i64,
    pub step: u64,
    pub default: i64,
    /// `None` when it could not be read (write-only, or inactive).
    pub current: Option<i64>,
    /// Menu entries: value and label.
    pub menu: Vec<(i64, String)>,
    pub read_only: bool,
    pub inactive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Integer,
    Boolean,
    Menu,
    Button,
    Other,
}

impl fmt::Display for ControlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlKind::Integer => "int",
            ControlKind::Boolean => "bool",
            ControlKind::Menu => "menu",
            ControlKind::Button => "button",
            ControlKind::Other => "other",
        })
    }
}

/// The `timeout` option of a camera backend: seconds without a frame before the
/// camera counts as lost (default 3, 0.1 to 600).
pub fn timeout_option(
    table: &crate::backend::table::BackendConfig,
    value: &Option<toml::Spanned<f64>>,
) -> Result<Duration, BackendError> {
    match value {
        None => Ok(Duration::from_secs(3)),
        Some(t) if (0.1..=600.0).contains(t.get_ref()) => Ok(Duration::from_secs_f64(*t.get_ref())),
        Some(t) => Err(table
            .error_at(t.span(), "timeout must be 0.1 to 600 seconds".into())
            .into()),
    }
}

/// The config name of a control, as `v4l2-ctl` spells it: lower case, every run of
/// other characters one `_`. "White Balance Temperature, Auto" →
/// `white_balance_temperature_auto`.
pub fn control_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    while key.ends_with('_') {
        key.pop();
    }
    key
}

/// Chooses, among `offered` (width, height), the size nearest to the asked one:
/// the smallest difference in area, then in aspect. `None` only when `offered` is empty.
pub fn nearest_size(offered: &[(u32, u32)], width: u32, height: u32) -> Option<(u32, u32)> {
    let want_area = width as f64 * height as f64;
    let want_aspect = width as f64 / height.max(1) as f64;
    offered.iter().copied().min_by(|a, b| {
        let cost = |&(w, h): &(u32, u32)| {
            let area = ((w as f64 * h as f64) / want_area.max(1.0)).ln().abs();
            let aspect = ((w as f64 / h.max(1) as f64) / want_aspect).ln().abs();
            area + aspect
        };
        cost(a).total_cmp(&cost(b))
    })
}

/// The picture viewers get while the camera is away: dark grey with "NO SIGNAL" in
/// the middle, in the stream's own format and geometry, so viewers need no new
/// handshake. The same geometry always gives the same bytes (tests compare them).
pub fn no_signal_frame(info: FrameInfo) -> Result<Frame, BackendError> {
    if info.format == PixelFormat::H264 {
        return Err(BackendError::Unsupported {
            backend: "camera",
            what: "a \"no signal\" picture in H.264".into(),
        });
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let mut rgb = vec![40u8; w * h * 3];
    let text = "NO SIGNAL";
    let scale = (w / (text.len() * 8 * 2)).clamp(1, 16);
    let (tw, th) = crate::media::text::size(text, scale);
    let at = (w.saturating_sub(tw) / 2, h.saturating_sub(th) / 2);
    crate::media::text::draw_rgb(&mut rgb, w, at, scale, [220; 3], text);
    let mut frame = Frame::empty();
    if info.format == PixelFormat::Jpeg {
        let mut out = Vec::new();
        let size = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        jpeg_encoder::Encoder::new(&mut out, 80)
            .encode(
                &rgb,
                size(info.width),
                size(info.height),
                jpeg_encoder::ColorType::Rgb,
            )
            .map_err(|e| BackendError::Invalid {
                what: "the no-signal picture".into(),
                why: e.to_string(),
            })?;
        frame.info = info;
        frame.data = out;
        return Ok(frame);
    }
    let mut packed = Frame::empty();
    crate::media::convert::from_rgb24(&rgb, info.width, info.height, info.format, &mut packed);
    // The device's rows may be padded: lay the packed rows out at its stride.
    info.validate(&crate::media::frame::Limits::default())?;
    frame.reset(info);
    copy_planes(&packed, &mut frame);
    Ok(frame)
}

/// Copies the rows of `src` into `dst`, which has the same format and size but may
/// have a different stride.
fn copy_planes(src: &Frame, dst: &mut Frame) {
    let (si, di) = (src.info, dst.info);
    let rows = |info: FrameInfo| -> Vec<(usize, usize, usize)> {
        // (offset, stride, row bytes) for every row of every plane.
        let s = info.stride as usize;
        let h = info.height as usize;
        let row = info.format.min_stride(info.width).unwrap_or(0) as usize;
        let mut out: Vec<_> = (0..h).map(|y| (y * s, s, row)).collect();
        match info.format {
            PixelFormat::Nv12 => out.extend((0..h / 2).map(|y| (s * h + y * s, s, row))),
            PixelFormat::I420 => {
                let cs = s / 2;
                let plane = cs * (h / 2);
                out.extend((0..h / 2).map(|y| (s * h + y * cs, cs, row / 2)));
                out.extend((0..h / 2).map(|y| (s * h + plane + y * cs, cs, row / 2)));
            }
            _ => {}
        }
        out
    };
    for ((so, _, n), (d_o, _, _)) in rows(si).into_iter().zip(rows(di)) {
        dst.data[d_o..d_o + n].copy_from_slice(&src.data[so..so + n]);
    }
}

/// Opens the camera again, by the identity it was first opened with.
pub type Reopen = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, BackendError> + Send>;

/// Keeps a camera stream alive across unplugging and failures: while the camera is
/// away, viewers get a "no signal" frame every second and the camera is looked for
/// again every second; when it is back, streaming goes on with the same geometry
/// and unbroken sequence numbers. Viewers never see the connection drop.
pub struct Supervised {
    name: String,
    info: StreamInfo,
    camera: Option<Box<dyn FrameSource>>,
    reopen: Reopen,
    /// None for an H.264 camera: a picture would need an encoder, so its
    /// viewers keep the last picture while it is away.
    no_signal: Option<Frame>,
    seq: u64,
    next_attempt: Instant,
    next_no_signal: Instant,
    lost_since: Option<Instant>,
}

impl Supervised {
    /// Wraps an open camera; `name` is what the logs call it.
    pub fn new(
        name: String,
        camera: Box<dyn FrameSource>,
        reopen: Reopen,
    ) -> Result<Supervised, BackendError> {
        let info = camera.stream_info();
        Ok(Supervised {
            name,
            info,
            camera: Some(camera),
            reopen,
            no_signal: match info.frame.format {
                PixelFormat::H264 => None,
                _ => Some(no_signal_frame(info.frame)?),
            },
            seq: 0,
            next_attempt: Instant::now(),
            next_no_signal: Instant::now(),
            lost_since: None,
        })
    }

    fn lose(&mut self, why: &SourceError) {
        log::warn!(
            "camera {} lost ({why}): sending \"no signal\" frames and looking for it every {} s",
            self.name,
            RETRY_INTERVAL.as_secs()
        );
        // Dropping the source closes the device, so a re-plugged camera can be opened.
        self.camera = None;
        let now = Instant::now();
        self.lost_since = Some(now);
        self.next_attempt = now + RETRY_INTERVAL;
        self.next_no_signal = now;
    }

    fn try_reopen(&mut self) {
        match (self.reopen)() {
            Ok(camera) => {
                let info = camera.stream_info();
                if info.frame != self.info.frame {
                    log::warn!(
                        "camera {} is back but now gives {} instead of {}: still waiting",
                        self.name,
                        info.frame,
                        self.info.frame
                    );
                    return;
                }
                let away = self.lost_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
                log::info!("camera {} is back after {away:.1} s", self.name);
                self.camera = Some(camera);
                self.lost_since = None;
            }
            Err(e) => log::debug!("camera {} not back yet: {e}", self.name),
        }
    }
}

impl FrameSource for Supervised {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn request_keyframe(&mut self) -> bool {
        self.camera.as_mut().is_some_and(|c| c.request_keyframe())
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        loop {
            if let Some(camera) = self.camera.as_mut() {
                match camera.next_frame(frame) {
                    Ok(()) => {
                        frame.seq = self.seq;
                        self.seq += 1;
                        return Ok(());
                    }
                    Err(SourceError::Timeout(d)) => return Err(SourceError::Timeout(d)),
                    Err(e) => self.lose(&e),
                }
            }
            let now = Instant::now();
            if now >= self.next_attempt {
                self.next_attempt = now + RETRY_INTERVAL;
                self.try_reopen();
                if self.camera.is_some() {
                    continue;
                }
            }
            let now = Instant::now();
            if let Some(no_signal) = self
                .no_signal
                .as_ref()
                .filter(|_| now >= self.next_no_signal)
            {
                self.next_no_signal = now + RETRY_INTERVAL;
                frame.info = no_signal.info;
                frame.data.clear();
                frame.data.extend_from_slice(&no_signal.data);
                frame.capture_us = crate::media::clock::now_us();
                frame.seq = self.seq;
                self.seq += 1;
                return Ok(());
            }
            if self.no_signal.is_none() {
                // Nothing to send meanwhile: the caller gets control back.
                let wait = self.next_attempt.saturating_duration_since(now);
                std::thread::sleep(wait);
                return Err(SourceError::Timeout(wait));
            }
            std::thread::sleep(self.next_attempt.min(self.next_no_signal) - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn control_keys_follow_v4l2_ctl() {
        assert_eq!(control_key("Brightness"), "brightness");
        assert_eq!(
            control_key("White Balance Temperature, Auto"),
            "white_balance_temperature_auto"
        );
        assert_eq!(control_key("Exposure (Absolute)"), "exposure_absolute");
        assert_eq!(control_key("  Gain "), "gain");
    }

    #[test]
    fn nearest_size_prefers_area_then_aspect() {
        let offered = [
            (320, 180),
            (640, 360),
            (640, 480),
            (1280, 720),
            (1920, 1080),
        ];
        assert_eq!(nearest_size(&offered, 640, 480), Some((640, 480)));
        assert_eq!(nearest_size(&offered, 1000, 700), Some((1280, 720)));
        assert_eq!(nearest_size(&offered, 800, 600), Some((640, 480)));
        assert_eq!(nearest_size(&offered, 4000, 3000), Some((1920, 1080)));
        assert_eq!(nearest_size(&[], 4000, 3000), None);
    }

    #[test]
    fn no_signal_frame_honours_the_stride_and_is_stable() {
        for format in PixelFormat::ALL {
            let mut info = FrameInfo::packed(format, 64, 48).unwrap();
            if format == PixelFormat::H264 {
                // Would need an encoder: an H.264 camera's viewers keep the
                // last picture instead.
                assert!(no_signal_frame(info).is_err());
                continue;
            }
            if format != PixelFormat::Jpeg {
                info.stride += 8;
            }
            let a = no_signal_frame(info).unwrap();
            let b = no_signal_frame(info).unwrap();
            assert_eq!(a.info, info);
            assert_eq!(a.data, b.data, "{format}");
            if format == PixelFormat::Jpeg {
                assert_eq!(&a.data[..2], &[0xFF, 0xD8]);
                continue;
            }
            assert_eq!(a.data.len(), info.byte_len());
            // The background is dark and the letters are bright.
            let mut rgb = Vec::new();
            assert!(crate::media::convert::to_rgb24(&a, &mut rgb));
            assert!(rgb[0] < 60, "{format}: corner {}", rgb[0]);
            assert!(rgb.iter().any(|&v| v > 180), "{format}: no letters");
        }
    }

    /// A camera that fails after `frames` frames, and opens again only when allowed.
    struct Flaky {
        info: StreamInfo,
        left: usize,
    }

    impl FrameSource for Flaky {
        fn stream_info(&self) -> StreamInfo {
            self.info
        }
        fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
            if self.left == 0 {
                return Err(SourceError::Io {
                    what: "flaky".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENODEV),
                });
            }
            self.left -= 1;
            frame.reset(self.info.frame);
            frame.data.fill(200);
            Ok(())
        }
    }

    #[test]
    fn a_lost_camera_gives_no_signal_then_comes_back() {
        let info = StreamInfo {
            frame: FrameInfo::packed(PixelFormat::Grey, 32, 16).unwrap(),
            fps: 30.0,
        };
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = attempts.clone();
        let reopen: Reopen = Box::new(move || {
            // Away for the first two attempts, then back.
            if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(BackendError::Invalid {
                    what: "camera".into(),
                    why: "not there".into(),
                })
            } else {
                Ok(Box::new(Flaky { info, left: 100 }))
            }
        });
        let mut s =
            Supervised::new("test".into(), Box::new(Flaky { info, left: 2 }), reopen).unwrap();
        let no_signal = no_signal_frame(info.frame).unwrap();
        let mut frame = Frame::empty();
        let mut kinds = Vec::new();
        let started = Instant::now();
        for _ in 0..8 {
            s.next_frame(&mut frame).unwrap();
            kinds.push(frame.data == no_signal.data);
            assert_eq!(frame.seq as usize, kinds.len() - 1, "unbroken numbering");
        }
        // 2 camera frames, then about one no-signal frame a second until the third
        // attempt (about 3 s after the loss) succeeds, then camera frames again.
        assert_eq!(&kinds[..2], &[false, false]);
        let first_back = kinds.iter().skip(2).position(|&n| !n).unwrap() + 2;
        assert!((3..=5).contains(&first_back), "{kinds:?}");
        assert!(kinds[first_back..].iter().all(|&n| !n), "{kinds:?}");
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }
}
