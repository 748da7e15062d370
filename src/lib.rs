//! livestream: low-latency live video from a camera to screens on the same network.
//!
//! The pipeline is source → codec → TCP → codec → sink; each stage is a trait
//! ([`sources::FrameSource`], [`codecs::FrameCodec`], [`sinks::FrameSink`]) whose
//! backends register themselves by name (see [`registry`]). See
//! `docs/architecture.md` for the threads and how frames move between them.

pub use inventory;

// In reading order: what flows, the three roles and their backends, the wire,
// then the two programs and the command line around them.
pub mod backend;
pub mod bench;
pub mod cli;
pub mod codecs;
pub mod config;
pub mod error;
pub mod media;
pub mod net;
pub mod registry;
pub mod secure;
pub mod server;
pub mod sinks;
pub mod sources;
#[cfg(feature = "v4l2")]
pub mod v4l2;
pub mod viewer;
