//! Error types shared by the backends. Each says what went wrong and keeps its cause;
//! `main` adds the context of the command and maps them to exit codes.

use std::error::Error;
use std::io;

use crate::backend::table::ConfigError;
use crate::media::frame::{GeometryError, PixelFormat};

/// A backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    #[error("{backend} does not support {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("{what} is not valid: {why}")]
    Invalid { what: String, why: String },
    /// A library the backend is built on failed to set it up (an engine that
    /// could not start, a camera that did not open, a picture that does not
    /// decode). Its error is kept whole as the cause; boxed because its type
    /// exists only when that backend is compiled in.
    #[error("{what}: {source}")]
    Library {
        what: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl BackendError {
    pub fn io(what: impl Into<String>, source: io::Error) -> BackendError {
        BackendError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A source could not deliver a frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A finite source (a recording) has no more frames.
    #[error("end of stream")]
    EndOfStream,
    /// No frame came within this time, which is not (yet) a failure: the caller
    /// checks whether it should stop and asks again.
    #[error("no frame within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} is corrupt: {why}")]
    Corrupt { what: String, why: String },
    /// A backend's own library failed (see [`BackendError::Library`]).
    #[error("{what}: {source}")]
    Library {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A payload could not be encoded or decoded. The codec library's own error is
/// kept as the source (boxed: each codec has its own type).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{codec}: payload decodes to {got} bytes, the stream header says {expected}")]
    WrongSize {
        codec: &'static str,
        expected: usize,
        got: usize,
    },
    /// The payload breaks a rule the codec checks itself (sizes, trailing bytes).
    #[error("{codec}: corrupt payload: {why}")]
    Corrupt { codec: &'static str, why: String },
    /// The codec's library (or its header parser) refused the payload.
    #[error("{codec}: corrupt payload: {source}")]
    Decode {
        codec: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// A frame the source delivered already encoded (an MJPEG camera's) is broken.
    #[error("{codec}: corrupt payload: frame {seq} from the source: {source}")]
    SourceFrame {
        codec: &'static str,
        seq: u64,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    #[error("{codec} cannot carry {format} frames")]
    Unsupported {
        codec: &'static str,
        format: PixelFormat,
    },
    /// The codec cannot carry a stream of this geometry or rate.
    #[error("{codec} cannot carry {what}")]
    Stream { codec: &'static str, what: String },
    /// The codec's library could not encode the frame.
    #[error("{codec}: {source}")]
    Encode {
        codec: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

/// A sink could not take a frame.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{sink} cannot take {what}")]
    Unsupported { sink: &'static str, what: String },
}
