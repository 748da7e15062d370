//! The libjpeg-turbo 3 engine (feature `turbojpeg`; built from source, needs cmake
//! and nasm): SIMD encode and decode, several times faster than pure Rust. An
//! encoder and a decoder are separate values (one libjpeg-turbo handle each), so
//! a sink that only decodes builds no compressor; each is used by one thread at
//! a time (an encoder thread, or a viewer's decode loop).

use super::{Layout, Subsampling};

pub const NAME: &str = "libjpeg-turbo";
pub const SUMMARY: &str = "JPEG (quality 80, 4:2:0) with libjpeg-turbo; MJPEG passes through";

/// What this engine reports.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Turbo(#[from] turbojpeg::Error),
    #[error("image is {got_width}x{got_height}, expected {width}x{height}")]
    WrongSize {
        got_width: usize,
        got_height: usize,
        width: u32,
        height: u32,
    },
}

pub struct Encoder {
    compressor: turbojpeg::Compressor,
    subsamp: turbojpeg::Subsamp,
    /// Worst-case output, kept at full size so no frame zero-fills it again.
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<Encoder, EngineError> {
        let mut compressor = turbojpeg::Compressor::new()?;
        compressor.set_quality(quality as i32)?;
        Ok(Encoder {
            compressor,
            subsamp: match subsampling {
                Subsampling::S420 => turbojpeg::Subsamp::Sub2x2,
                Subsampling::S422 => turbojpeg::Subsamp::Sub2x1,
                Subsampling::S444 => turbojpeg::Subsamp::None,
            },
            scratch: Vec::new(),
        })
    }

    /// Encodes packed pixels into `out` (cleared first).
    pub fn encode(
        &mut self,
        data: &[u8],
        width: u32,
        height: u32,
        layout: Layout,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let (format, bpp) = match layout {
            Layout::Rgb => (turbojpeg::PixelFormat::RGB, 3),
            Layout::Bgr => (turbojpeg::PixelFormat::BGR, 3),
            Layout::Rgba => (turbojpeg::PixelFormat::RGBX, 4),
            Layout::Bgrx => (turbojpeg::PixelFormat::BGRX, 4),
            Layout::Grey => (turbojpeg::PixelFormat::GRAY, 1),
        };
        let (w, h) = (width as usize, height as usize);
        // Grey input makes a grey JPEG: libjpeg-turbo refuses 4:2:0 of one channel.
        let subsamp = if layout == Layout::Grey {
            turbojpeg::Subsamp::Gray
        } else {
            self.subsamp
        };
        self.compressor.set_subsamp(subsamp)?;
        let max = self.compressor.buf_len(w, h)?;
        if self.scratch.len() < max {
            self.scratch.resize(max, 0);
        }
        let image = turbojpeg::Image {
            pixels: data,
            width: w,
            pitch: w * bpp,
            height: h,
            format,
        };
        let n = self
            .compressor
            .compress_to_slice(image, &mut self.scratch)?;
        out.clear();
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

pub struct Decoder {
    decompressor: turbojpeg::Decompressor,
}

impl Decoder {
    pub fn new() -> Result<Decoder, EngineError> {
        Ok(Decoder {
            decompressor: turbojpeg::Decompressor::new()?,
        })
    }

    /// Decodes into `rgb`, exactly `width * height * 3` bytes; the caller checked
    /// the image's size against the stream's.
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
        rgb: &mut [u8],
    ) -> Result<(), EngineError> {
        let header = self.decompressor.read_header(jpeg)?;
        if (header.width, header.height) != (width as usize, height as usize) {
            return Err(EngineError::WrongSize {
                got_width: header.width,
                got_height: header.height,
                width,
                height,
            });
        }
        let image = turbojpeg::Image {
            pixels: rgb,
            width: width as usize,
            pitch: width as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        Ok(self.decompressor.decompress(jpeg, image)?)
    }
}
