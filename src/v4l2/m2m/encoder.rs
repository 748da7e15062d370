//! The stateful encoder: pictures in on OUTPUT, coded frames out on CAPTURE.

use std::path::Path;
use std::time::Instant;

use v4l::v4l_sys as sys;

use super::device::{Device, Side, Yu12};
use super::queue::Queue;
use super::*;
use crate::v4l2::ioctl::{zeroed, SetCtrl, SetParm, SetSelection};

/// What an encoder is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    pub fourcc: Fourcc,
    pub width: u32,
    pub height: u32,
    /// Frames a second (0: unknown).
    pub fps: f64,
    /// Target bitrate, bit/s.
    pub bitrate: u32,
    /// Frames between periodic keyframes; 0: only on request.
    pub keyframe_period: u32,
}

/// A stateful encoder node set up for one stream.
pub struct Encoder {
    device: Device,
    output: Queue,
    capture: Queue,
    input: Yu12,
    fourcc: Fourcc,
    /// What the driver does not offer, for a person.
    missing: Vec<&'static str>,
    force_keyframe: bool,
    /// Parameter sets an H.264 encoder sent in a buffer of their own (the
    /// Pi's does, before its first picture): they go before the next picture.
    headers: Vec<u8>,
}

// SAFETY: the mappings are owned by this value alone and only touched through
// `&mut self` (or `&self` for reading a buffer we hold).
unsafe impl Send for Encoder {}

impl Encoder {
    /// Opens the encoder at `path` (or the first for the fourcc) and sets it
    /// up for `settings`: coded format on CAPTURE, YU12 pictures on OUTPUT,
    /// the frame rate, and the controls the driver offers (bitrate, keyframe
    /// period, H.264's profile and repeated parameter sets); what it does not
    /// offer is logged once, here.
    pub fn open(path: Option<&Path>, settings: &EncoderSettings) -> Result<Encoder, M2mError> {
        let fourcc = settings.fourcc;
        let device = open_node(path, Role::Encoder, fourcc)?;
        let size = (settings.width, settings.height);
        if size.0 == 0 || size.1 == 0 || size.0 % 2 != 0 || size.1 % 2 != 0 {
            return Err(device.refused(format!(
                "{}x{}: pictures need an even width and height",
                size.0, size.1
            )));
        }
        let coded_room = (size.0 as usize * size.1 as usize).clamp(1 << 16, MAX_CODED_BUFFER);
        let coded = device.set_format(Side::Capture, fourcc, size, coded_room as u32)?;
        if coded.fourcc != fourcc {
            return Err(device.refused(format!("it took {} for {fourcc}", coded.fourcc)));
        }
        let pictures = device.set_format(Side::Output, Fourcc::YU12, size, 0)?;
        let input = pictures
            .yu12_planes(size, pictures.sizeimage as usize)
            .ok_or_else(|| {
                device.refused(format!(
                    "it took {} {}x{} (stride {}, {} bytes) for YU12 {}x{}",
                    pictures.fourcc,
                    pictures.width,
                    pictures.height,
                    pictures.bytesperline,
                    pictures.sizeimage,
                    size.0,
                    size.1
                ))
            })?;
        let mut encoder = Encoder {
            output: Queue::new(&device, Side::Output),
            capture: Queue::new(&device, Side::Capture),
            device,
            input,
            fourcc,
            missing: Vec::new(),
            force_keyframe: false,
            headers: Vec::new(),
        };
        if (pictures.width, pictures.height) != size {
            encoder.crop(size);
        }
        encoder.set_rate(settings.fps);
        encoder.set_controls(settings);
        encoder.output.allocate(&encoder.device, BUFFERS)?;
        encoder.capture.allocate(&encoder.device, BUFFERS)?;
        // Every buffer the input side gives must hold a whole picture.
        let room = encoder.output.maps.iter().map(|m| m.len).min().unwrap_or(0);
        if encoder.input.yu12_planes_fit(room).is_none() {
            return Err(encoder.device.driver(format!(
                "gave {room}-byte input buffers for a {}x{} picture",
                size.0, size.1
            )));
        }
        for index in encoder.capture.idle.clone() {
            encoder.capture.queue(&encoder.device, index, 0)?;
        }
        encoder.output.stream_on(&encoder.device)?;
        encoder.capture.stream_on(&encoder.device)?;
        if !encoder.missing.is_empty() {
            log::info!(
                "{} ({}): does not offer {}; its own defaults apply",
                encoder.device.card,
                encoder.device.path.display(),
                encoder.missing.join(", ")
            );
        }
        Ok(encoder)
    }

    /// Tells the driver which part of a rounded-up buffer is the picture.
    pub(super) fn crop(&mut self, (width, height): (u32, u32)) {
        let mut s: sys::v4l2_selection = zeroed();
        // The selection API takes the single-planar type for either variant.
        s.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT;
        s.target = sys::V4L2_SEL_TGT_CROP;
        s.r.width = width;
        s.r.height = height;
        if let Err(e) = self.device.ioctl(SetSelection, &mut s) {
            log::warn!(
                "{}: could not crop its {}-row buffers to {width}x{height} ({e}): \
                 the bottom rows may show",
                self.device.path.display(),
                self.input.rows
            );
        }
    }

    pub(super) fn set_rate(&mut self, fps: f64) {
        if !(fps > 0.0 && fps <= 1000.0) {
            return;
        }
        let mut p: sys::v4l2_streamparm = zeroed();
        p.type_ = self.output.kind;
        // `type_` is an output type, whose member is `output`.
        p.parm.output.timeperframe.numerator = 1000;
        p.parm.output.timeperframe.denominator = (fps * 1000.0).round() as u32;
        if self.device.ioctl(SetParm, &mut p).is_err() {
            self.missing.push("a frame rate (VIDIOC_S_PARM)");
        }
    }

    pub(super) fn set_controls(&mut self, settings: &EncoderSettings) {
        use sys::*;
        let h264 = settings.fourcc == Fourcc::H264;
        let period = i64::from(settings.keyframe_period);
        let wanted: [(u32, &'static str, i64, bool); 7] = [
            (
                V4L2_CID_MPEG_VIDEO_BITRATE_MODE,
                "constant bitrate",
                v4l2_mpeg_video_bitrate_mode_V4L2_MPEG_VIDEO_BITRATE_MODE_CBR.into(),
                true,
            ),
            (
                V4L2_CID_MPEG_VIDEO_BITRATE,
                "a bitrate",
                settings.bitrate.into(),
                true,
            ),
            (
                V4L2_CID_MPEG_VIDEO_GOP_SIZE,
                "a keyframe period",
                period,
                period > 0,
            ),
            (
                V4L2_CID_MPEG_VIDEO_H264_I_PERIOD,
                "an H.264 IDR period",
                period,
                h264 && period > 0,
            ),
            (
                V4L2_CID_MPEG_VIDEO_H264_PROFILE,
                "the H.264 constrained baseline profile",
                v4l2_mpeg_video_h264_profile_V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE
                    .into(),
                h264,
            ),
            (
                V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
                "repeated parameter sets",
                1,
                h264,
            ),
            (
                V4L2_CID_MPEG_VIDEO_PREPEND_SPSPPS_TO_IDR,
                "parameter sets before each IDR",
                1,
                h264,
            ),
        ];
        for (id, what, value, applies) in wanted {
            if !applies {
                continue;
            }
            match self.device.set_control(id, value) {
                Ok(Some(held)) if held != value => log::warn!(
                    "{}: asked for {what} ({value}), it holds {held}",
                    self.device.path.display()
                ),
                Ok(Some(_)) => {}
                Ok(None) => self.missing.push(what),
                Err(e) => log::warn!(
                    "{}: refused {what} ({value}): {e}",
                    self.device.path.display()
                ),
            }
        }
        self.force_keyframe = self
            .device
            .control(V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)
            .is_some();
        if !self.force_keyframe {
            self.missing.push("keyframes on request");
        }
    }

    /// The device and its node, for a person.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.device.card, self.device.path.display())
    }

    /// Whether the driver makes a keyframe when asked
    /// (`V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`); else only its period does.
    pub fn takes_keyframe_requests(&self) -> bool {
        self.force_keyframe
    }

    /// Encodes one picture into `out` (cleared first); a keyframe when
    /// `keyframe` (if the driver takes requests). Returns whether the driver
    /// flagged the result a keyframe (`V4L2_BUF_FLAG_KEYFRAME`); not every
    /// driver does (vicodec's stateful encoder does not), so a caller that
    /// must know reads its coded format (the h264 codec: its NAL units).
    pub fn encode(
        &mut self,
        picture: &Planes<'_>,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, M2mError> {
        let index = self.output.take_idle(&self.device)?;
        let geometry = self.input;
        let buffer = self.output.bytes_mut(index);
        write_picture(picture, geometry, buffer).ok_or_else(|| {
            self.device.refused(format!(
                "a picture smaller than {}x{} (its planes are short)",
                geometry.width, geometry.height
            ))
        })?;
        if keyframe && self.force_keyframe {
            let mut c: sys::v4l2_control = zeroed();
            c.id = sys::V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME;
            if let Err(e) = self.device.ioctl(SetCtrl, &mut c) {
                log::warn!(
                    "{}: a keyframe request failed: {e}",
                    self.device.path.display()
                );
            }
        }
        let len = self.output.maps[index as usize].len as u32;
        self.output.queue(&self.device, index, len)?;
        let until = Instant::now() + DEADLINE;
        loop {
            let d = self.capture.next_filled(&self.device, until)?;
            let failed = d.buffer.flags & sys::V4L2_BUF_FLAG_ERROR != 0;
            let flagged_key = d.buffer.flags & sys::V4L2_BUF_FLAG_KEYFRAME != 0;
            let data = self.capture.data(&self.device, &d)?;
            let headers_only =
                !failed && self.fourcc == Fourcc::H264 && !has_picture(data) && !data.is_empty();
            if headers_only {
                // The parameter sets alone: kept for the picture that follows.
                self.headers.clear();
                self.headers.extend_from_slice(data);
            } else if !failed {
                out.clear();
                out.extend_from_slice(&self.headers);
                out.extend_from_slice(data);
            }
            let index = d.buffer.index;
            self.capture.queue(&self.device, index, 0)?;
            if failed {
                return Err(M2mError::Failed {
                    path: self.device.path.clone(),
                    what: "encode",
                });
            }
            if !headers_only {
                self.headers.clear();
                return Ok(flagged_key);
            }
        }
    }
}

impl Yu12 {
    /// `Some` when a buffer of `len` bytes holds this picture.
    pub(super) fn yu12_planes_fit(&self, len: usize) -> Option<()> {
        let (_, v) = self.chroma();
        (v.checked_add(self.y_stride / 2 * (self.rows / 2))? <= len).then_some(())
    }
}

/// Copies `picture` into a driver buffer laid out as `geometry`. `None` when
/// the picture's planes are shorter than the geometry needs.
pub(super) fn write_picture(picture: &Planes<'_>, geometry: Yu12, buffer: &mut [u8]) -> Option<()> {
    let (u_at, v_at) = geometry.chroma();
    let (w, h, stride) = (geometry.width, geometry.height, geometry.y_stride);
    let c_stride = stride / 2;
    let planes = [
        (picture.y, picture.y_stride, 0, stride, w, h),
        (picture.u, picture.c_stride, u_at, c_stride, w / 2, h / 2),
        (picture.v, picture.c_stride, v_at, c_stride, w / 2, h / 2),
    ];
    for (src, src_stride, at, dst_stride, pw, ph) in planes {
        for row in 0..ph {
            let from = src.get(row * src_stride..row * src_stride + pw)?;
            let to = at + row * dst_stride;
            buffer.get_mut(to..to + pw)?.copy_from_slice(from);
        }
    }
    Some(())
}

/// Whether an H.264 buffer holds a picture (a slice), not only parameter
/// sets or SEI. Unparseable data counts as a picture: the caller checks it.
pub(super) fn has_picture(data: &[u8]) -> bool {
    let mut any = false;
    for nal in crate::media::annexb::nal_units(data) {
        let Ok(nal) = nal else { return true };
        any = true;
        if matches!(nal.kind(), 1 | 5) {
            return true;
        }
    }
    !any
}

impl Drop for Encoder {
    fn drop(&mut self) {
        self.output.release(&self.device);
        self.capture.release(&self.device);
    }
}
