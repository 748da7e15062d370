//! `v4l2`: Linux cameras (USB webcams, CSI cameras, capture cards) through the
//! kernel's Video4Linux2 API.
//!
//! Built on the `v4l` crate's kernel bindings and ioctl wrapper; the device
//! handling itself is here, because everything a device says is untrusted input:
//! names that are not UTF-8, control types newer than the bindings, steps of zero.
//! Nothing a device answers can panic this code.
//!
//! - opens by node (`/dev/video0`), by a udev link (`/dev/v4l/by-id/...`), or by
//!   identity (`name:CARD`, `bus:BUS-INFO`), and reopens by the same identity;
//! - negotiates format, size and frame rate (VIDIOC_S_FMT, VIDIOC_S_PARM) and
//!   takes the nearest offered mode when the asked one is not;
//! - streams through mmap buffers, polls with a timeout (the fd is non-blocking,
//!   so no ioctl can hang), and always hands over the newest frame: when several
//!   are waiting, the older ones go straight back to the driver;
//! - MJPEG frames pass through as JPEG frames, undecoded.
//!
//! The files: `device` (finding and opening nodes), `mode` (what a node
//! offers, and the mode chosen), `controls`, `stream` (mmap buffers); here the
//! options, the registration and `V4l2Source`, which the capture thread owns.
//! Each ioctl is tied to its kernel struct in `crate::v4l2::ioctl`, which the
//! hardware encoder shares.

mod controls;
mod device;
mod mode;
mod stream;

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use super::camera::{CameraInfo, CameraMode, Reopen, Supervised};
use super::{FrameSource, SourceBackend};
use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::backend::Availability;
use crate::error::{BackendError, SourceError};
use crate::media::annexb;
use crate::media::frame::{Frame, FrameInfo, Limits, PixelFormat, StreamInfo};
use controls::ControlValue;
use device::{capture_nodes, find, fourcc_text, stable_id, to_format, Node};
use mode::{choose, PREFERENCE};
use stream::{capture_time, usable_len, Stream};

inventory::submit! {
    SourceBackend {
        name: "v4l2",
        summary: "Linux cameras (USB, CSI, capture cards) through V4L2",
        probe,
        open,
        devices: Some(list),
    }
}

/// Buffers asked of the driver when the config does not say.
const DEFAULT_BUFFERS: u32 = 4;
fn probe() -> Availability {
    if capture_nodes().next().is_some() {
        Availability::Available
    } else {
        Availability::Unavailable("no V4L2 capture device (/dev/video*) found".into())
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// "/dev/video0", "/dev/v4l/by-id/...", "name:CARD" or "bus:BUS-INFO";
    /// default: the first capture device.
    device: Option<Spanned<String>>,
    /// A pixel format the camera must give, or "auto" (default): `[capture]`
    /// format when the camera offers it, else its best offer.
    format: Option<Spanned<String>>,
    /// mmap buffers (2 to 32).
    buffers: Option<Spanned<u32>>,
    /// Seconds without a frame before the camera counts as lost (default 3).
    timeout: Option<Spanned<f64>>,
    /// Controls by name, set when the camera opens.
    controls: BTreeMap<Spanned<String>, Spanned<ControlValue>>,
}

/// The validated options, kept to reopen the camera exactly as it was opened.
#[derive(Debug, Clone)]
struct Request {
    device: Option<String>,
    format: Option<PixelFormat>,
    buffers: u32,
    timeout: Duration,
    controls: Vec<(String, ControlValue)>,
    capture: CaptureConfig,
}

fn request(capture: &CaptureConfig, table: &BackendConfig) -> Result<Request, BackendError> {
    let opts: Options = table.parse()?;
    let format = match &opts.format {
        None => None,
        Some(f) if f.get_ref() == "auto" => None,
        Some(f) => Some(PixelFormat::from_name(f.get_ref()).ok_or_else(|| {
            let names: Vec<_> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
            table.error_at(
                f.span(),
                format!(
                    "unknown pixel format; expected one of: auto, {}",
                    names.join(", ")
                ),
            )
        })?),
    };
    let buffers = match &opts.buffers {
        None => DEFAULT_BUFFERS,
        Some(b) if (2..=32).contains(b.get_ref()) => *b.get_ref(),
        Some(b) => {
            return Err(table
                .error_at(b.span(), "buffers must be 2 to 32".into())
                .into())
        }
    };
    let timeout = super::camera::timeout_option(table, &opts.timeout)?;
    Ok(Request {
        device: opts.device.map(Spanned::into_inner),
        format,
        buffers,
        timeout,
        controls: opts
            .controls
            .into_iter()
            .map(|(k, v)| (k.into_inner(), v.into_inner()))
            .collect(),
        capture: *capture,
    })
}

fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let req = request(capture, table)?;
    let node = find(req.device.as_deref(), None)?;
    let identity = (node.card.clone(), node.bus.clone());
    let name = format!("{} ({})", node.path.display(), node.card);
    let camera = V4l2Source::start(node, &req)?;
    let reopen: Reopen = Box::new(move || {
        let node = find(req.device.as_deref(), Some(&identity))?;
        Ok(Box::new(V4l2Source::start(node, &req)?) as Box<dyn FrameSource>)
    });
    Ok(Box::new(Supervised::new(name, Box::new(camera), reopen)?))
}

/// Everything `livestream devices` shows about every capture node.
fn list(with_controls: bool) -> Vec<CameraInfo> {
    capture_nodes()
        .map(|n| describe(&n, with_controls))
        .collect()
}

/// Everything `livestream devices` shows about one camera: its modes in the
/// formats livestream takes (best first), the other formats by code, and its
/// controls when asked.
fn describe(node: &Node, with_controls: bool) -> CameraInfo {
    let mut modes = Vec::new();
    let mut other = Vec::new();
    for code in node.formats() {
        let Some(format) = to_format(code) else {
            other.push(fourcc_text(code));
            continue;
        };
        if modes.iter().any(|m: &CameraMode| m.format == format) {
            continue;
        }
        for (width, height) in node.sizes(code).listed() {
            modes.push(CameraMode {
                format,
                width,
                height,
                fps: node.rates(code, width, height),
            });
        }
    }
    let rank = |f: PixelFormat| PREFERENCE.iter().position(|&p| p == f).unwrap_or(99);
    modes.sort_by_key(|m| rank(m.format));
    CameraInfo {
        backend: "v4l2",
        node: node.path.display().to_string(),
        option: "device",
        stable_id: stable_id(node),
        name: node.card.clone(),
        detail: format!("driver {}, bus {}", node.driver, node.bus),
        modes,
        other_formats: other,
        controls: if with_controls {
            node.controls().into_iter().map(|(_, c)| c).collect()
        } else {
            Vec::new()
        },
    }
}

/// A streaming camera: the node and its mapped buffers, the negotiated mode, and
/// the watch for a camera that stopped sending.
struct V4l2Source {
    stream: Stream,
    info: StreamInfo,
    timeout: Duration,
    last_frame: Instant,
    /// Frames the driver flagged as broken, or too short: skipped.
    broken: u64,
    /// Older frames given back unread because a newer one was waiting.
    skipped: u64,
    /// H.264: an access unit was broken, so the ones after it wait for a keyframe.
    chain_broken: bool,
    /// The driver's count of the last frame taken (`v4l2_buffer.sequence`).
    last_sequence: Option<u32>,
    /// H.264: times the driver's count jumped, i.e. it dropped access units.
    gaps: u64,
}

impl V4l2Source {
    /// Negotiates the mode, sets controls, maps buffers and starts streaming.
    fn start(node: Node, req: &Request) -> Result<V4l2Source, BackendError> {
        let cap = &req.capture;
        let (info, fps) = negotiate(&node, req)?;
        if (info.width, info.height) != (cap.width, cap.height) || info.format != cap.format {
            log::info!(
                "{} offers no {}x{} {}: using the nearest it has, {info}",
                node.card,
                cap.width,
                cap.height,
                cap.format
            );
        }
        if cap.fps > 0.0 && (fps - cap.fps).abs() > 0.01 {
            log::info!("{} runs {info} at {fps:.2} fps, not {}", node.card, cap.fps);
        }
        node.apply_controls(&req.controls)?;
        let stream = Stream::start(node, req.buffers)?;
        let node = stream.node();
        log::info!(
            "v4l2: {} \"{}\" ({}): {info} at {fps:.2} fps, {} buffers",
            node.path.display(),
            node.card,
            node.bus,
            stream.buffers()
        );
        Ok(V4l2Source {
            stream,
            info: StreamInfo { frame: info, fps },
            timeout: req.timeout,
            last_frame: Instant::now(),
            broken: 0,
            skipped: 0,
            chain_broken: false,
            last_sequence: None,
            gaps: 0,
        })
    }

    /// H.264 from the camera: each access unit depends on the one before, so
    /// none is skipped for a newer one.
    fn inter_frame(&self) -> bool {
        self.info.frame.format == PixelFormat::H264
    }

    fn lost(&self, what: &str, e: io::Error) -> SourceError {
        let node = self.stream.node();
        SourceError::Io {
            what: format!("{} ({}): {what}", node.path.display(), node.card),
            source: e,
        }
    }
}

/// Whether the driver dropped frames before the one it counts `sequence`: its
/// count jumped forward by more than one since the last. A count that stands
/// still (drivers that do not count) or goes back (a restarted count) is no gap.
fn skipped_frames(last: &mut Option<u32>, sequence: u32) -> bool {
    let gap = last.is_some_and(|l| (2..1 << 31).contains(&sequence.wrapping_sub(l)));
    *last = Some(sequence);
    gap
}

/// An H.264 camera's access unit (`None`: the driver's was broken), or `None`
/// while the chain is broken: after a broken one, nothing until a keyframe,
/// which is asked of `node`.
fn follows_chain(chain_broken: &mut bool, node: &Node, au: Option<&[u8]>) -> Option<usize> {
    match au {
        None => {
            if !*chain_broken {
                *chain_broken = true;
                if let Err(e) = node.force_keyframe() {
                    log::debug!("{}: no keyframe on request: {e}", node.path.display());
                }
            }
            None
        }
        Some(au) if *chain_broken => {
            let keyframe = annexb::check_access_unit(au).is_ok_and(|a| a.keyframe);
            *chain_broken = !keyframe;
            keyframe.then_some(au.len())
        }
        Some(au) => Some(au.len()),
    }
}

/// Chooses the mode and sets it: the frames the driver will give (checked against
/// the limits, and its buffers against the geometry), and their rate.
fn negotiate(node: &Node, req: &Request) -> Result<(FrameInfo, f64), BackendError> {
    let choice = choose(node, req.format, &req.capture)?;
    let io = |what: &str, e| BackendError::io(format!("{}: {what}", node.path.display()), e);
    let pix = node
        .set_format(choice.code, choice.width, choice.height)
        .map_err(|e| io("setting the format (VIDIOC_S_FMT)", e))?;
    let format = to_format(pix.pixelformat).ok_or_else(|| BackendError::Unsupported {
        backend: "v4l2",
        what: format!(
            "{} (the driver answered it for {})",
            fourcc_text(pix.pixelformat),
            fourcc_text(choice.code)
        ),
    })?;
    let fps = node.set_rate(req.capture.fps).unwrap_or(req.capture.fps);
    let info = FrameInfo {
        format,
        width: pix.width,
        height: pix.height,
        stride: if format.is_compressed() {
            0
        } else {
            pix.bytesperline
        },
    };
    let len = info.validate(&Limits::default())?;
    if !format.is_compressed() && (pix.sizeimage as usize) < len {
        return Err(BackendError::Invalid {
            what: node.path.display().to_string(),
            why: format!(
                "the driver's image size {} is less than {info} needs ({len})",
                pix.sizeimage
            ),
        });
    }
    Ok((info, fps))
}

impl FrameSource for V4l2Source {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn request_keyframe(&mut self) -> bool {
        let asked = self.stream.node().force_keyframe();
        if let Err(e) = &asked {
            log::debug!(
                "{}: no keyframe on request (V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME): {e}",
                self.stream.node().path.display()
            );
        }
        asked.is_ok()
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let info = self.info.frame;
        loop {
            let since = self.last_frame.elapsed();
            if since >= self.timeout {
                return Err(self.lost(
                    &format!("no frame for {:.1} s", since.as_secs_f64()),
                    io::ErrorKind::TimedOut.into(),
                ));
            }
            let wait = (self.timeout - since).min(Duration::from_secs(1));
            if !self.stream.poll(wait).map_err(|e| self.lost("poll", e))? {
                if self.last_frame.elapsed() >= self.timeout {
                    continue; // reported above
                }
                return Err(SourceError::Timeout(wait));
            }
            let Some(mut b) = self
                .stream
                .dequeue()
                .map_err(|e| self.lost("VIDIOC_DQBUF", e))?
            else {
                continue;
            };
            // Newest wins: older frames go back to the driver unread (not
            // for H.264, where the newer would not decode without them).
            if !self.inter_frame() {
                while let Some(newer) = self
                    .stream
                    .dequeue()
                    .map_err(|e| self.lost("VIDIOC_DQBUF", e))?
                {
                    self.stream
                        .requeue(b)
                        .map_err(|e| self.lost("VIDIOC_QBUF", e))?;
                    self.skipped += 1;
                    b = newer;
                }
            }
            let bytes = self.stream.bytes(&b);
            let (used, flags) = (b.buffer().bytesused as usize, b.buffer().flags);
            let mut usable = usable_len(info, bytes, used, flags);
            if self.inter_frame() {
                // A driver that dropped access units (v4l2loopback does for a
                // reader more than two behind; UVC when no buffer was queued)
                // says so only by its count: the next delta lacks its reference.
                if skipped_frames(&mut self.last_sequence, b.buffer().sequence) {
                    self.gaps += 1;
                    follows_chain(&mut self.chain_broken, self.stream.node(), None);
                }
                let au = usable.map(|n| &bytes[..n]);
                usable = follows_chain(&mut self.chain_broken, self.stream.node(), au);
            }
            if let Some(n) = usable {
                frame.info = info;
                frame.data.clear();
                frame.data.extend_from_slice(&bytes[..n]);
                frame.capture_us = capture_time(b.buffer());
            } else {
                self.broken += 1;
                if self.broken.is_power_of_two() {
                    log::warn!(
                        "{}: {} broken frames skipped (flagged by the driver, short, or not a whole JPEG)",
                        self.stream.node().path.display(),
                        self.broken
                    );
                }
            }
            self.stream
                .requeue(b)
                .map_err(|e| self.lost("VIDIOC_QBUF", e))?;
            if usable.is_some() {
                self.last_frame = Instant::now();
                return Ok(());
            }
        }
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        // The stream (a field) stops and unmaps after this.
        if self.skipped > 0 || self.broken > 0 || self.gaps > 0 {
            log::info!(
                "{}: {} older frames skipped for newer ones, {} broken, {} dropped by the driver",
                self.stream.node().path.display(),
                self.skipped,
                self.broken,
                self.gaps
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(text: &str) -> Result<Request, String> {
        let cfg = crate::config::Config::parse(
            crate::backend::table::ConfigText {
                origin: "cam.toml".into(),
                text: text.into(),
            },
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
        request(
            &cfg.capture,
            &cfg.backend(crate::backend::Kind::Source, "v4l2"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_jump_in_the_drivers_frame_count_is_a_gap() {
        let mut last = None;
        let mut gap = |s| skipped_frames(&mut last, s);
        assert!(!gap(5), "the first");
        assert!(!gap(6), "the next");
        assert!(!gap(6), "the same again: a driver that does not count");
        assert!(gap(8), "7 went missing");
        assert!(!gap(9));
        assert!(!gap(3), "back: a count that starts again");
        assert!(gap(1000), "4 to 999 went missing");
        assert!(
            !gap(u32::MAX),
            "a jump of more than 2^31 is the count going back"
        );
        assert!(!gap(0), "across the wrap");
        assert!(gap(2), "1 went missing");
        assert!(!gap(0) && !gap(0), "a driver that always says 0");
    }

    #[test]
    fn options_are_checked_and_errors_point_at_the_value() {
        let ok = options(
            "[sources.v4l2]\ndevice = \"name:vivid\"\nformat = \"nv12\"\nbuffers = 6\n\
             [sources.v4l2.controls]\nbrightness = 140\nexposure_auto = false\n\
             power_line_frequency = \"50 Hz\"\n",
        )
        .unwrap();
        assert_eq!(ok.device.as_deref(), Some("name:vivid"));
        assert_eq!(ok.format, Some(PixelFormat::Nv12));
        assert_eq!(ok.buffers, 6);
        assert_eq!(
            ok.controls,
            vec![
                ("brightness".into(), ControlValue::Int(140)),
                ("exposure_auto".into(), ControlValue::Bool(false)),
                (
                    "power_line_frequency".into(),
                    ControlValue::Label("50 Hz".into())
                ),
            ]
        );
        let auto = options("[sources.v4l2]\nformat = \"auto\"\n").unwrap();
        assert_eq!((auto.format, auto.buffers), (None, DEFAULT_BUFFERS));

        let bad = options("[sources.v4l2]\nbuffers = 99\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:11") && bad.contains("buffers must be 2 to 32"),
            "{bad}"
        );
        let bad = options("[sources.v4l2]\nformat = \"mjpeg\"\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:10") && bad.contains("expected one of: auto, rgb24"),
            "{bad}"
        );
        let bad = options("[sources.v4l2]\ntimeout = 0.0\n").unwrap_err();
        assert!(bad.contains("cam.toml:2:11"), "{bad}");
        let bad = options("[sources.v4l2]\ndevic = \"/dev/video0\"\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:1") && bad.contains("unknown field `devic`"),
            "{bad}"
        );
        let bad = options("[sources.v4l2.controls]\nbrightness = [1]\n").unwrap_err();
        assert!(bad.contains("cam.toml:2:14"), "{bad}");
    }
}
