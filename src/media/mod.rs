//! What every stage shares about pictures and time, with no threads and no I/O
//! of its own: frames and their geometry, the newest-wins slot that hands frames
//! between threads, clocks, the latency histogram, pixel conversion, text
//! stamped into frames, the recording format, fragmented MP4 writing for H.264,
//! how close a picture is to its source (PSNR), and scaling I420 pictures.

pub mod annexb;
pub mod clock;
pub mod convert;
pub mod frame;
pub mod histogram;
pub mod mp4;
pub mod quality;
pub mod recording;
pub mod scale;
pub mod slot;
pub mod text;
