//! The `v4l2m2m` engine: H.264 from a kernel memory-to-memory encoder (the
//! Raspberry Pi 0-4's `bcm2835-codec` at `/dev/video11`), through
//! [`crate::v4l2::m2m`]. What the driver hands back is a device's output, so
//! each access unit is walked like any other untrusted H.264 before it goes
//! out, and its keyframe flag is taken from its NAL units, not the driver's.

use std::path::Path;

use super::{Engine, Planes, NAME};
use crate::error::CodecError;
use crate::media::annexb;
use crate::v4l2::m2m::{self, Encoder, EncoderSettings};

pub(super) struct Hardware {
    encoder: Encoder,
    size: (u32, u32),
}

impl Hardware {
    pub(super) fn open(
        device: Option<&Path>,
        settings: &EncoderSettings,
    ) -> Result<Hardware, CodecError> {
        let encoder = Encoder::open(device, settings).map_err(|e| CodecError::Encode {
            codec: NAME,
            source: Box::new(e),
        })?;
        log::info!("h264: encoding with {}", encoder.describe());
        Ok(Hardware {
            encoder,
            size: (settings.width, settings.height),
        })
    }
}

impl Engine for Hardware {
    fn encode(
        &mut self,
        picture: &Planes<'_>,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<bool>, CodecError> {
        let planes = m2m::Planes {
            y: picture.y,
            u: picture.u,
            v: picture.v,
            y_stride: picture.y_stride,
            c_stride: picture.c_stride,
        };
        self.encoder
            .encode(&planes, keyframe, out)
            .map_err(|e| CodecError::Encode {
                codec: NAME,
                source: Box::new(e),
            })?;
        if out.is_empty() {
            return Ok(None);
        }
        let au =
            annexb::check_stream_access_unit(out, self.size).map_err(|e| CodecError::Encode {
                codec: NAME,
                source: format!("the hardware encoder's access unit: {e}").into(),
            })?;
        Ok(Some(au.keyframe))
    }

    fn describe(&self) -> String {
        self.encoder.describe()
    }
}
