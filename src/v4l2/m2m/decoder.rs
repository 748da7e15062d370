//! The stateful decoder: coded frames in on OUTPUT; the pictures' size comes
//! from the driver (a source change event), then pictures out on CAPTURE.

use std::path::Path;
use std::time::Instant;

use v4l::v4l_sys as sys;

use super::device::{Device, Layout, Side};
use super::queue::{Desc, Queue};
use super::*;
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
use crate::v4l2::ioctl::{zeroed, DqEvent, SubscribeEvent};

/// A stateful decoder node: coded frames in, YU12 pictures out.
pub struct Decoder {
    device: Device,
    output: Queue,
    capture: Queue,
    /// The pictures' layout, once the driver has parsed the stream.
    pictures: Option<Layout>,
    fourcc: Fourcc,
}

// SAFETY: as for `Encoder`.
unsafe impl Send for Decoder {}

impl Decoder {
    /// Opens the decoder at `path` (or the first for the fourcc) for a stream
    /// of `fourcc` whose frames are at most `max_frame` bytes.
    pub fn open(
        path: Option<&Path>,
        fourcc: Fourcc,
        max_frame: usize,
    ) -> Result<Decoder, M2mError> {
        let device = open_node(path, Role::Decoder, fourcc)?;
        let room = max_frame.clamp(1 << 16, MAX_CODED_BUFFER) as u32;
        let coded = device.set_format(Side::Output, fourcc, (0, 0), room)?;
        if coded.fourcc != fourcc {
            return Err(device.refused(format!("it took {} for {fourcc}", coded.fourcc)));
        }
        let mut sub: sys::v4l2_event_subscription = zeroed();
        sub.type_ = sys::V4L2_EVENT_SOURCE_CHANGE;
        device
            .ioctl(SubscribeEvent, &mut sub)
            .map_err(device.io("subscribing to source changes (VIDIOC_SUBSCRIBE_EVENT)"))?;
        let mut decoder = Decoder {
            output: Queue::new(&device, Side::Output),
            capture: Queue::new(&device, Side::Capture),
            device,
            pictures: None,
            fourcc,
        };
        decoder.output.allocate(&decoder.device, BUFFERS)?;
        decoder.output.stream_on(&decoder.device)?;
        Ok(decoder)
    }

    /// The node and driver, for a person.
    pub fn describe(&self) -> String {
        format!(
            "{} at {} ({})",
            self.device.card,
            self.device.path.display(),
            self.fourcc
        )
    }

    /// Decodes one coded frame into `frame`, whose `info` gives the picture
    /// size the caller expects; it becomes packed I420 of that size. The
    /// first frame must start the stream (a keyframe with its headers).
    pub fn decode(&mut self, coded: &[u8], frame: &mut Frame) -> Result<(), M2mError> {
        let index = self.output.take_idle(&self.device)?;
        let buffer = self.output.bytes_mut(index);
        if coded.len() > buffer.len() {
            return Err(M2mError::TooLarge {
                path: self.device.path.clone(),
                len: coded.len(),
                room: buffer.len(),
            });
        }
        buffer[..coded.len()].copy_from_slice(coded);
        self.output.queue(&self.device, index, coded.len() as u32)?;
        let until = Instant::now() + DEADLINE;
        if self.pictures.is_none() {
            self.start_pictures(until)?;
        }
        let d = self.capture.next_filled(&self.device, until)?;
        let failed = d.buffer.flags & sys::V4L2_BUF_FLAG_ERROR != 0;
        let result = if failed {
            Err(M2mError::Failed {
                path: self.device.path.clone(),
                what: "decode",
            })
        } else {
            self.take_picture(&d, frame)
        };
        self.capture.queue(&self.device, d.buffer.index, 0)?;
        result
    }

    /// Waits for the driver to parse the stream's size (its source change
    /// event), then sets up the picture side.
    pub(super) fn start_pictures(&mut self, until: Instant) -> Result<(), M2mError> {
        loop {
            let mut event: sys::v4l2_event = zeroed();
            match self.device.ioctl(DqEvent, &mut event) {
                Ok(()) if event.type_ == sys::V4L2_EVENT_SOURCE_CHANGE => break,
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(self.device.io("taking an event (VIDIOC_DQEVENT)")(e)),
            }
            let ready = self
                .device
                .wait(libc::POLLPRI, until)
                .map_err(self.device.io("waiting for the stream's size (poll)"))?;
            if ready == 0 && Instant::now() >= until {
                return Err(M2mError::Timeout {
                    path: self.device.path.clone(),
                    what: "stream size from the decoder (source change event)",
                });
            }
        }
        let parsed = self.device.get_format(Side::Capture)?;
        let pictures = self.device.set_format(
            Side::Capture,
            Fourcc::YU12,
            (parsed.width, parsed.height),
            0,
        )?;
        if pictures.fourcc != Fourcc::YU12 {
            return Err(self
                .device
                .refused(format!("it decodes to {}, not YU12", pictures.fourcc)));
        }
        let extra = self
            .device
            .control(sys::V4L2_CID_MIN_BUFFERS_FOR_CAPTURE)
            .map_or(0, |q| q.default_value.clamp(0, 16) as u32);
        self.capture
            .allocate(&self.device, BUFFERS.max(extra + 2))?;
        for index in self.capture.idle.clone() {
            self.capture.queue(&self.device, index, 0)?;
        }
        self.capture.stream_on(&self.device)?;
        self.pictures = Some(pictures);
        Ok(())
    }

    pub(super) fn take_picture(&self, d: &Desc, frame: &mut Frame) -> Result<(), M2mError> {
        let Some(layout) = self.pictures else {
            unreachable!("set up before a picture is taken")
        };
        let (w, h) = (frame.info.width, frame.info.height);
        let data = self.capture.data(&self.device, d)?;
        let geometry = layout.yu12_planes((w, h), data.len()).ok_or_else(|| {
            self.device.refused(format!(
                "a {}x{} picture ({} bytes, stride {}) for a {w}x{h} stream",
                layout.width,
                layout.height,
                data.len(),
                layout.bytesperline
            ))
        })?;
        let info = FrameInfo::packed(PixelFormat::I420, w, h)
            .map_err(|e| self.device.refused(e.to_string()))?;
        frame.reset(info);
        let (u_at, v_at) = geometry.chroma();
        let (w, h, stride) = (w as usize, h as usize, geometry.y_stride);
        let (y, chroma) = frame.data.split_at_mut(w * h);
        let (u, v) = chroma.split_at_mut(w * h / 4);
        for (dst, at, src_stride, pw, ph) in [
            (y, 0, stride, w, h),
            (u, u_at, stride / 2, w / 2, h / 2),
            (v, v_at, stride / 2, w / 2, h / 2),
        ] {
            for row in 0..ph {
                let from = at + row * src_stride;
                dst[row * pw..(row + 1) * pw].copy_from_slice(&data[from..from + pw]);
            }
        }
        Ok(())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.output.release(&self.device);
        self.capture.release(&self.device);
    }
}
