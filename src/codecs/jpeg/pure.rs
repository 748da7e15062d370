//! The default JPEG engine: `jpeg-encoder` (pure Rust, AVX2 when the CPU has it)
//! and `zune-jpeg`. Needs no system package.

use super::{Layout, Subsampling};

pub const NAME: &str = "jpeg-encoder + zune-jpeg";
pub const SUMMARY: &str =
    "JPEG (quality 80, 4:2:0) with jpeg-encoder + zune-jpeg; MJPEG passes through";

pub struct Engine {
    quality: u8,
    sampling: jpeg_encoder::SamplingFactor,
}

impl Engine {
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<Engine, String> {
        Ok(Engine {
            quality,
            sampling: match subsampling {
                Subsampling::S420 => jpeg_encoder::SamplingFactor::R_4_2_0,
                Subsampling::S422 => jpeg_encoder::SamplingFactor::R_4_2_2,
                Subsampling::S444 => jpeg_encoder::SamplingFactor::R_4_4_4,
            },
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
    ) -> Result<(), String> {
        let colour = match layout {
            Layout::Rgb => jpeg_encoder::ColorType::Rgb,
            Layout::Bgr => jpeg_encoder::ColorType::Bgr,
            Layout::Rgba => jpeg_encoder::ColorType::Rgba,
            Layout::Bgrx => jpeg_encoder::ColorType::Bgra,
            Layout::Grey => jpeg_encoder::ColorType::Luma,
        };
        let (w, h) = (u16::try_from(width), u16::try_from(height));
        let (Ok(w), Ok(h)) = (w, h) else {
            return Err(format!("{width}x{height} is over JPEG's 65535x65535"));
        };
        out.clear();
        let mut encoder = jpeg_encoder::Encoder::new(&mut *out, self.quality);
        encoder.set_sampling_factor(self.sampling);
        encoder
            .encode(data, w, h, colour)
            .map_err(|e| e.to_string())
    }

    /// Decodes into `rgb`, exactly `width * height * 3` bytes; the caller checked
    /// the image's size against the stream's.
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
        rgb: &mut [u8],
    ) -> Result<(), String> {
        let options = zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
            .set_max_width(width as usize)
            .set_max_height(height as usize);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(jpeg),
            options,
        );
        decoder.decode_headers().map_err(|e| e.to_string())?;
        decoder.decode_into(rgb).map_err(|e| e.to_string())
    }
}
