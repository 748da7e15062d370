//! livestream: low-latency live video from a camera to screens on the same network.
//!
//! The pipeline is source → codec → TCP → codec → sink; each stage is a trait
//! ([`sources::FrameSource`], [`codecs::FrameCodec`], [`sinks::FrameSink`]) whose
//! backends register themselves by name (see [`registry`]). See
//! `docs/architecture.md` for the threads and how frames move between them.

pub use inventory;

pub mod bench;
pub mod cli;
pub mod clock;
pub mod codecs;
pub mod config;
pub mod convert;
pub mod discovery;
pub mod error;
pub mod frame;
pub mod http;
pub mod jpeg;
pub mod local_sinks;
pub mod protocol;
pub mod recording;
pub mod registry;
pub mod secure;
pub mod server;
pub mod sinks;
pub mod slot;
pub mod sources;
pub mod stats;
pub mod text;
pub mod trust;
pub mod viewer;
