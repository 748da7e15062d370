//! The default JPEG engine: `jpeg-encoder` (pure Rust, AVX2 when the CPU has it)
//! and `zune-jpeg`. Needs no system package. An encoder and a decoder are
//! separate values, so a sink that only decodes builds no encoder; each is used
//! by one thread at a time (an encoder thread, or a viewer's decode loop).

use super::{Layout, Subsampling};

pub const NAME: &str = "jpeg-encoder + zune-jpeg";
pub const SUMMARY: &str =
    "JPEG (quality 80, 4:2:0) with jpeg-encoder + zune-jpeg; MJPEG passes through";

/// What this engine's libraries refuse, as they report it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{width}x{height} is over JPEG's 65535x65535")]
    TooLarge { width: u32, height: u32 },
    #[error(transparent)]
    Encode(#[from] jpeg_encoder::EncodingError),
    #[error(transparent)]
    Decode(#[from] zune_jpeg::errors::DecodeErrors),
}

pub struct Encoder {
    quality: u8,
    sampling: jpeg_encoder::SamplingFactor,
}

impl Encoder {
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<Encoder, EngineError> {
        Ok(Encoder {
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
    ) -> Result<(), EngineError> {
        let colour = match layout {
            Layout::Rgb => jpeg_encoder::ColorType::Rgb,
            Layout::Bgr => jpeg_encoder::ColorType::Bgr,
            Layout::Rgba => jpeg_encoder::ColorType::Rgba,
            Layout::Bgrx => jpeg_encoder::ColorType::Bgra,
            Layout::Grey => jpeg_encoder::ColorType::Luma,
        };
        let (w, h) = (u16::try_from(width), u16::try_from(height));
        let (Ok(w), Ok(h)) = (w, h) else {
            return Err(EngineError::TooLarge { width, height });
        };
        out.clear();
        let mut encoder = jpeg_encoder::Encoder::new(&mut *out, self.quality);
        encoder.set_sampling_factor(self.sampling);
        Ok(encoder.encode(data, w, h, colour)?)
    }
}

/// zune-jpeg keeps no state between images: a decoder is made per image.
pub struct Decoder;

impl Decoder {
    pub fn new() -> Result<Decoder, EngineError> {
        Ok(Decoder)
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
        let options = zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
            .set_max_width(width as usize)
            .set_max_height(height as usize);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(jpeg),
            options,
        );
        decoder.decode_headers()?;
        Ok(decoder.decode_into(rgb)?)
    }
}
