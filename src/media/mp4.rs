//! Fragmented MP4 (ISO/IEC 14496-12, H.264 in it per 14496-15) for one H.264
//! stream, written as the frames come, so that a recording cut short (`kill -9`,
//! a full disk) still plays up to its last whole fragment.
//!
//! The file is an init segment (`ftyp`, then `moov` with an empty sample table,
//! the `avcC` built from the first keyframe's parameter sets, and `mvex`), then
//! one fragment (`moof` + `mdat`) per access unit: a cut loses at most the frame
//! being written. Each fragment's `tfdt` gives the frame's decode time since the
//! first frame on a 90 kHz clock, so a variable frame rate keeps its timing.
//!
//! Choices, and why:
//! - **Our own writer, not a crate.** Tried with `cargo add` here (crates.io, the
//!   versions cargo picks for our `rust-version` 1.85, all of which build):
//!   `mp4-atom` 0.16 (0.17 needs Rust 1.88) has every box type, but a fragment
//!   is a `Moof` of `Vec<Traf>` of `Vec<Trun>` and an `Mdat` that owns a copy of
//!   the frame: allocation per frame, and five more dependencies (`num`,
//!   `derive_more`, `tracing`, `pastey`, a second `thiserror`). `muxide` 0.2 (0.5
//!   needs 1.86) has a fragmented muxer, but it gathers frames into
//!   duration-sized segments and hands each back as a new `Vec<u8>`.
//!   `shiguredo_mp4` 2025.4 has no fMP4 muxer (its 2026 canary has one, returning
//!   a `Vec` per segment, and needs Rust 1.93). `mp4` 0.14 (unmaintained since
//!   2023) writes only a progressive file through `Write + Seek`. One track, one
//!   sample per fragment and no reading make the boxes a few fixed layouts: each
//!   is written straight into the caller's `Vec<u8>` with its size patched in
//!   at the end.
//! - **Parameter sets live only in `avcC`.** SPS and PPS are dropped from the
//!   samples, as are access unit delimiters (and end of sequence / stream and
//!   filler, which mean nothing inside a sample); slices and SEI stay. The
//!   sample entry is `avc1`, whose parameter sets belong in the sample entry;
//!   ffmpeg and Chromium take in-band copies too, but a copy adds nothing: a
//!   later SPS or PPS that is not byte for byte the first keyframe's is an error
//!   ([`Mp4Error::SizeChanged`], [`Mp4Error::ParameterSetChanged`]), and the
//!   caller starts a new file.
//! - **`ftyp`**: major brand `iso5` (fragments address their data from the
//!   `moof`, `default-base-is-moof`), compatible `iso5`, `iso6`, `avc1`, `mp41`,
//!   as ffmpeg's own `+default_base_moof` output plus the codec's brand.
//! - **Times must grow by at least one 90 kHz tick.** A time that does not is
//!   an error ([`Mp4Error::TimeNotIncreasing`]) rather than clamped: the caller
//!   knows whether its clock or its frames are wrong. A frame's sample duration
//!   is its gap after the frame before (the next one is not known yet); the
//!   first frame's is 1/30 s unless set with [`Fmp4Writer::with_first_duration`].
//!   Players take each frame's time from `tfdt`; the durations matter for the
//!   last frame only.
//! - **No allocation per frame.** A push checks the access unit with
//!   [`annexb::check_access_unit`] (which allocates nothing), then appends to
//!   `out`; the writer keeps only the SPS and PPS, copied at the first keyframe.
//!   A caller that clears and reuses `out` allocates nothing more once it has
//!   grown to the largest fragment (`tests/allocations.rs` counts it).
//! - **No `mehd` or durations in `moov`**: the stream is live, its length unknown.
//!
//! A failed push writes nothing (`out` is as it was) and changes nothing: the
//! caller may drop that frame and go on.
//!
//! [`boxes`] reads back the box headers of what was written (the tests and
//! the `mp4_write` fuzz target check the output with it). A file cut inside a
//! fragment's `mdat` plays in ffmpeg up to the fragment before; one cut inside
//! a `moof` plays when read as a stream, but ffmpeg 5.1 refuses to open it as
//! a (seekable) file, as it does its own fragmented output cut there: a
//! recorder that reopens a cut file trims it to the end of its last whole box
//! first.

use std::time::Duration;

use crate::media::annexb::{self, AnnexBError, Nal, NAL_IDR, NAL_PPS, NAL_SEI, NAL_SLICE, NAL_SPS};

/// The media clock: 90 kHz, as RTP video; a tick is 11.1 µs.
pub const TIMESCALE: u32 = 90_000;

const TRACK_ID: u32 = 1;

/// `sample_flags` (14496-12 8.8.3.1): an IDR depends on no other sample
/// (`sample_depends_on` 2); any other frame depends on others (1) and is not a
/// sync sample (`sample_is_non_sync_sample`).
const SYNC_SAMPLE: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// `tfhd` flag: sample data offsets count from the start of the `moof`.
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: a data offset, and per sample its duration, size and flags.
const TRUN_FLAGS: u32 = 0x00_0001 | 0x00_0100 | 0x00_0200 | 0x00_0400;

/// The unity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Size of an `mdat` header: size and type.
const MDAT_HEADER: u64 = 8;

/// What is wrong with an access unit or its time, and which one (`frame`: how
/// many access units the writer had taken before it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    #[error("access unit {frame}: {source}")]
    AccessUnit {
        frame: u64,
        #[source]
        source: AnnexBError,
    },
    #[error("the first access unit is not a keyframe (IDR): a file must start with one")]
    FirstNotKeyframe,
    #[error("the first keyframe carries no {which}, which the init segment needs")]
    MissingParameterSet { which: &'static str },
    #[error(
        "access unit {frame}: the picture size changed from {}x{} to {}x{}: start a new file",
        .from.0, .from.1, .to.0, .to.1
    )]
    SizeChanged {
        frame: u64,
        from: (u32, u32),
        to: (u32, u32),
    },
    #[error(
        "access unit {frame}: its {which} at byte {offset} differs from the first keyframe's: start a new file"
    )]
    ParameterSetChanged {
        frame: u64,
        which: &'static str,
        offset: usize,
    },
    #[error(
        "access unit {frame}: time {time_us} µs is not a 90 kHz tick after the previous frame's {previous_us} µs"
    )]
    TimeNotIncreasing {
        frame: u64,
        previous_us: u64,
        time_us: u64,
    },
    #[error("access unit {frame}: {what} is {value}, over the {max} its MP4 field holds")]
    TooLarge {
        frame: u64,
        what: &'static str,
        value: u64,
        max: u64,
    },
}

/// What one [`Fmp4Writer::push`] appended to `out`: the init segment (first
/// push only), then the fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Bytes of `ftyp` + `moov`; 0 after the first push.
    pub init_bytes: usize,
    /// Bytes of `moof` + `mdat`.
    pub fragment_bytes: usize,
    pub keyframe: bool,
}

/// Writes one H.264 stream as fragmented MP4 into caller-owned bytes.
#[derive(Debug)]
pub struct Fmp4Writer {
    /// The first frame's sample duration, in ticks.
    first_duration: u32,
    /// Set by the first keyframe.
    stream: Option<Stream>,
}

/// What the first keyframe fixed, and where the stream is.
#[derive(Debug)]
struct Stream {
    /// Whole NAL units, header byte included, as `avcC` holds them.
    sps: Vec<u8>,
    pps: Vec<u8>,
    size: (u32, u32),
    first_us: u64,
    previous_us: u64,
    /// The previous frame's decode time, ticks since the first frame.
    previous_tick: u64,
    /// Access units written.
    frames: u64,
}

impl Default for Fmp4Writer {
    fn default() -> Self {
        Fmp4Writer::new()
    }
}

impl Fmp4Writer {
    /// A writer whose first frame lasts 1/30 s.
    pub fn new() -> Fmp4Writer {
        Fmp4Writer {
            first_duration: TIMESCALE / 30,
            stream: None,
        }
    }

    /// A writer whose first frame lasts `duration` (until the second frame
    /// comes, the writer cannot know): rounded to 90 kHz ticks, at least one,
    /// at most `u32::MAX` (13 hours).
    pub fn with_first_duration(duration: Duration) -> Fmp4Writer {
        let ticks = duration.as_micros().saturating_mul(9) / 100;
        Fmp4Writer {
            first_duration: u32::try_from(ticks).unwrap_or(u32::MAX).max(1),
            stream: None,
        }
    }

    /// The picture size the first keyframe's SPS declared, once one was taken.
    pub fn picture_size(&self) -> Option<(u32, u32)> {
        self.stream.as_ref().map(|s| s.size)
    }

    /// Appends to `out` the bytes for one access unit (Annex-B) captured at
    /// `time_us` (µs, any monotonic clock): for the first, which must be a
    /// keyframe with SPS and PPS, the init segment (`ftyp` + `moov` with the
    /// `avcC` built from that SPS and PPS, the picture size from the SPS) and
    /// then its fragment; afterwards one fragment (`moof` + `mdat`) per access
    /// unit. On an error `out` and the writer are as they were.
    pub fn push(
        &mut self,
        access_unit: &[u8],
        time_us: u64,
        out: &mut Vec<u8>,
    ) -> Result<Pushed, Mp4Error> {
        let frame = self.stream.as_ref().map_or(0, |s| s.frames);
        let found = annexb::check_access_unit(access_unit)
            .map_err(|source| Mp4Error::AccessUnit { frame, source })?;
        let sample_size = sample_size(access_unit, frame)?;
        let start = out.len();
        let Some(stream) = &mut self.stream else {
            if !found.keyframe {
                return Err(Mp4Error::FirstNotKeyframe);
            }
            let stream = Stream::from_keyframe(access_unit, time_us)?;
            write_init(out, &stream);
            let init_bytes = out.len() - start;
            let fragment = Fragment {
                sequence: 1,
                decode_tick: 0,
                duration: self.first_duration,
                keyframe: true,
                sample_size,
            };
            fragment.write(access_unit, out);
            self.stream = Some(stream);
            return Ok(Pushed {
                init_bytes,
                fragment_bytes: out.len() - start - init_bytes,
                keyframe: true,
            });
        };
        stream.check_parameter_sets(access_unit, found.sps_size)?;
        let (decode_tick, duration) = stream.tick(time_us)?;
        // 14496-12's `sequence_number` is 32 bits: 4.5 years at 30 frames a second.
        let sequence = u32::try_from(stream.frames + 1).map_err(|_| Mp4Error::TooLarge {
            frame,
            what: "the fragment number",
            value: stream.frames + 1,
            max: u32::MAX as u64,
        })?;
        Fragment {
            sequence,
            decode_tick,
            duration,
            keyframe: found.keyframe,
            sample_size,
        }
        .write(access_unit, out);
        stream.previous_us = time_us;
        stream.previous_tick = decode_tick;
        stream.frames += 1;
        Ok(Pushed {
            init_bytes: 0,
            fragment_bytes: out.len() - start,
            keyframe: found.keyframe,
        })
    }
}

/// NAL units a sample keeps: pictures and SEI (see the module doc).
fn kept(nal: &Nal<'_>) -> bool {
    matches!(nal.kind(), NAL_SLICE | NAL_IDR | NAL_SEI)
}

/// The sample's size once its kept NAL units carry 4-byte lengths instead of
/// start codes, checked to fit the `trun` and `mdat` size fields. `au` has
/// passed `check_access_unit`.
fn sample_size(au: &[u8], frame: u64) -> Result<u32, Mp4Error> {
    let size: u64 = annexb::nal_units(au)
        .flatten()
        .filter(kept)
        .map(|nal| 4 + nal.bytes.len() as u64)
        .sum();
    let max = u32::MAX as u64 - MDAT_HEADER;
    if size > max {
        return Err(Mp4Error::TooLarge {
            frame,
            what: "the sample's size in bytes",
            value: size,
            max,
        });
    }
    Ok(size as u32)
}

impl Stream {
    /// The stream the first keyframe sets up: its first SPS and PPS.
    fn from_keyframe(au: &[u8], time_us: u64) -> Result<Stream, Mp4Error> {
        let first = |kind| annexb::nal_units(au).flatten().find(|n| n.kind() == kind);
        let Some(sps) = first(NAL_SPS) else {
            return Err(Mp4Error::MissingParameterSet { which: "SPS" });
        };
        // The size of the SPS kept (`check_access_unit` gives the last one's).
        let size =
            annexb::sps_size(&sps).map_err(|source| Mp4Error::AccessUnit { frame: 0, source })?;
        let Some(pps) = first(NAL_PPS) else {
            return Err(Mp4Error::MissingParameterSet { which: "PPS" });
        };
        // `avcC` gives each set a 16-bit length.
        for nal in [sps, pps] {
            if nal.bytes.len() > u16::MAX as usize {
                return Err(Mp4Error::TooLarge {
                    frame: 0,
                    what: if nal.kind() == NAL_SPS {
                        "the SPS's length"
                    } else {
                        "the PPS's length"
                    },
                    value: nal.bytes.len() as u64,
                    max: u16::MAX as u64,
                });
            }
        }
        // `sps_size` parsed it, so it holds profile, constraints and level; the
        // check keeps `write_init` free of an index that could fail.
        if sps.bytes.len() < 4 {
            return Err(Mp4Error::AccessUnit {
                frame: 0,
                source: AnnexBError::ShortSps { offset: sps.offset },
            });
        }
        Ok(Stream {
            sps: sps.bytes.to_vec(),
            pps: pps.bytes.to_vec(),
            size,
            first_us: time_us,
            previous_us: time_us,
            previous_tick: 0,
            frames: 1,
        })
    }

    /// Every SPS and PPS after the first keyframe must be the same bytes.
    fn check_parameter_sets(&self, au: &[u8], size: Option<(u32, u32)>) -> Result<(), Mp4Error> {
        let frame = self.frames;
        if let Some(to) = size.filter(|&to| to != self.size) {
            return Err(Mp4Error::SizeChanged {
                frame,
                from: self.size,
                to,
            });
        }
        for nal in annexb::nal_units(au).flatten() {
            let (which, first) = match nal.kind() {
                NAL_SPS => ("SPS", &self.sps),
                NAL_PPS => ("PPS", &self.pps),
                _ => continue,
            };
            if nal.bytes != first.as_slice() {
                return Err(Mp4Error::ParameterSetChanged {
                    frame,
                    which,
                    offset: nal.offset,
                });
            }
        }
        Ok(())
    }

    /// The decode time of a frame at `time_us`, and the gap since the frame
    /// before (which becomes this frame's duration), in ticks.
    fn tick(&self, time_us: u64) -> Result<(u64, u32), Mp4Error> {
        let frame = self.frames;
        let not_after = Mp4Error::TimeNotIncreasing {
            frame,
            previous_us: self.previous_us,
            time_us,
        };
        let since_first = time_us
            .checked_sub(self.first_us)
            .ok_or(not_after.clone())?;
        // µs * 9 / 100 in 128 bits cannot overflow, and the result is below
        // `since_first`, so it fits 64 bits.
        let tick = (since_first as u128 * 9 / 100) as u64;
        if tick <= self.previous_tick {
            return Err(not_after);
        }
        let gap = tick - self.previous_tick;
        let duration = u32::try_from(gap).map_err(|_| Mp4Error::TooLarge {
            frame,
            what: "the gap after the previous frame in 90 kHz ticks",
            value: gap,
            max: u32::MAX as u64,
        })?;
        Ok((tick, duration))
    }
}

/// Starts a box: a size to patch in [`end`], then its type. Returns where it
/// starts.
fn begin(out: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    at
}

/// Starts a full box (a box with version and flags).
fn begin_full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let at = begin(out, kind);
    put32(out, (version as u32) << 24 | flags);
    at
}

/// Patches the size of the box that starts at `at`. Every box here is small,
/// or an `mdat` whose sample size was checked against 32 bits before writing.
fn end(out: &mut [u8], at: usize) {
    let size = out.len() - at;
    debug_assert!(size <= u32::MAX as usize, "a box over 4 GiB");
    out[at..at + 4].copy_from_slice(&(size as u32).to_be_bytes());
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn zeros(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// `ftyp` and `moov`: one video track, no samples (they come in fragments).
fn write_init(out: &mut Vec<u8>, s: &Stream) {
    let ftyp = begin(out, b"ftyp");
    out.extend_from_slice(b"iso5");
    put32(out, 512); // minor_version, as ffmpeg writes
    out.extend_from_slice(b"iso5iso6avc1mp41");
    end(out, ftyp);

    let moov = begin(out, b"moov");
    let mvhd = begin_full(out, b"mvhd", 0, 0);
    zeros(out, 8); // creation and modification times
    put32(out, 1000); // movie timescale
    put32(out, 0); // duration: unknown (live)
    put32(out, 0x0001_0000); // rate 1.0
    put16(out, 0x0100); // volume 1.0
    zeros(out, 10);
    MATRIX.iter().for_each(|&v| put32(out, v));
    zeros(out, 24); // pre_defined
    put32(out, TRACK_ID + 1); // next_track_ID
    end(out, mvhd);

    let trak = begin(out, b"trak");
    // Flags: track enabled, in movie.
    let tkhd = begin_full(out, b"tkhd", 0, 0x3);
    zeros(out, 8); // creation and modification times
    put32(out, TRACK_ID);
    zeros(out, 4);
    put32(out, 0); // duration
    zeros(out, 8);
    zeros(out, 8); // layer, alternate_group, volume (0 for video), reserved
    MATRIX.iter().for_each(|&v| put32(out, v));
    put32(out, s.size.0 << 16); // 16.16 fixed point; sides are at most 8192
    put32(out, s.size.1 << 16);
    end(out, tkhd);

    let mdia = begin(out, b"mdia");
    let mdhd = begin_full(out, b"mdhd", 0, 0);
    zeros(out, 8);
    put32(out, TIMESCALE);
    put32(out, 0); // duration
    put16(out, 0x55c4); // language "und", packed ISO 639-2/T
    put16(out, 0);
    end(out, mdhd);
    let hdlr = begin_full(out, b"hdlr", 0, 0);
    put32(out, 0);
    out.extend_from_slice(b"vide");
    zeros(out, 12);
    out.extend_from_slice(b"VideoHandler\0");
    end(out, hdlr);

    let minf = begin(out, b"minf");
    let vmhd = begin_full(out, b"vmhd", 0, 1);
    zeros(out, 8); // graphicsmode, opcolor
    end(out, vmhd);
    let dinf = begin(out, b"dinf");
    let dref = begin_full(out, b"dref", 0, 0);
    put32(out, 1);
    // Flag 1: the media data is in this file.
    let url = begin_full(out, b"url ", 0, 1);
    end(out, url);
    end(out, dref);
    end(out, dinf);

    let stbl = begin(out, b"stbl");
    let stsd = begin_full(out, b"stsd", 0, 0);
    put32(out, 1);
    write_avc1(out, s);
    end(out, stsd);
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = begin_full(out, kind, 0, 0);
        put32(out, 0); // entry_count
        end(out, b);
    }
    let stsz = begin_full(out, b"stsz", 0, 0);
    put32(out, 0); // sample_size
    put32(out, 0); // sample_count
    end(out, stsz);
    end(out, stbl);
    end(out, minf);
    end(out, mdia);
    end(out, trak);

    let mvex = begin(out, b"mvex");
    let trex = begin_full(out, b"trex", 0, 0);
    put32(out, TRACK_ID);
    put32(out, 1); // default_sample_description_index
    zeros(out, 12); // default duration, size, flags: every trun gives its own
    end(out, trex);
    end(out, mvex);
    end(out, moov);
}

/// The `avc1` sample entry with its `avcC` (14496-15 5.3.3.1).
fn write_avc1(out: &mut Vec<u8>, s: &Stream) {
    let avc1 = begin(out, b"avc1");
    zeros(out, 6);
    put16(out, 1); // data_reference_index
    zeros(out, 16); // pre_defined, reserved
    put16(out, s.size.0 as u16);
    put16(out, s.size.1 as u16);
    put32(out, 0x0048_0000); // 72 dpi
    put32(out, 0x0048_0000);
    put32(out, 0);
    put16(out, 1); // frame_count
    zeros(out, 32); // compressorname: none
    put16(out, 0x0018); // depth
    put16(out, 0xffff); // pre_defined -1

    let avcc = begin(out, b"avcC");
    out.push(1); // configurationVersion
                 // Profile, constraint flags and level, from the SPS (checked to be there).
    out.extend_from_slice(&s.sps[1..4]);
    out.push(0xfc | 3); // lengthSizeMinusOne: 4-byte lengths
    out.push(0xe0 | 1); // one SPS
    put16(out, s.sps.len() as u16); // checked against 16 bits
    out.extend_from_slice(&s.sps);
    out.push(1); // one PPS
    put16(out, s.pps.len() as u16);
    out.extend_from_slice(&s.pps);
    end(out, avcc);
    end(out, avc1);
}

/// One sample's fragment.
struct Fragment {
    sequence: u32,
    decode_tick: u64,
    duration: u32,
    keyframe: bool,
    /// From [`sample_size`].
    sample_size: u32,
}

impl Fragment {
    /// `moof` + `mdat` for `au`, which has passed `check_access_unit`.
    fn write(&self, au: &[u8], out: &mut Vec<u8>) {
        let moof = begin(out, b"moof");
        let mfhd = begin_full(out, b"mfhd", 0, 0);
        put32(out, self.sequence);
        end(out, mfhd);
        let traf = begin(out, b"traf");
        let tfhd = begin_full(out, b"tfhd", 0, DEFAULT_BASE_IS_MOOF);
        put32(out, TRACK_ID);
        end(out, tfhd);
        let tfdt = begin_full(out, b"tfdt", 1, 0);
        put64(out, self.decode_tick);
        end(out, tfdt);
        let trun = begin_full(out, b"trun", 0, TRUN_FLAGS);
        put32(out, 1); // sample_count
        let data_offset = out.len();
        put32(out, 0); // patched below
        put32(out, self.duration);
        put32(out, self.sample_size);
        put32(
            out,
            if self.keyframe {
                SYNC_SAMPLE
            } else {
                NON_SYNC_SAMPLE
            },
        );
        end(out, trun);
        end(out, traf);
        end(out, moof);
        // The sample starts after the moof and the mdat's header (a moof is
        // about a hundred bytes).
        let offset = (out.len() - moof) as u32 + MDAT_HEADER as u32;
        out[data_offset..data_offset + 4].copy_from_slice(&offset.to_be_bytes());

        let mdat = begin(out, b"mdat");
        for nal in annexb::nal_units(au).flatten().filter(kept) {
            put32(out, nal.bytes.len() as u32);
            out.extend_from_slice(nal.bytes);
        }
        end(out, mdat);
        debug_assert_eq!(
            out.len() - mdat,
            MDAT_HEADER as usize + self.sample_size as usize
        );
    }
}

/// A box header read back by [`boxes`]: its type, where it starts and its
/// size, header included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    pub offset: usize,
    pub size: usize,
}

impl BoxHeader {
    /// Where its body is in the bytes it was read from.
    pub fn body(&self) -> std::ops::Range<usize> {
        self.offset + 8..self.offset + self.size
    }
}

/// Why [`boxes`] stopped: a box is cut short (more bytes may come), or its
/// size cannot be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoxError {
    #[error("the box at byte {offset} is cut short: {size} bytes, {available} there")]
    Truncated {
        offset: usize,
        size: u64,
        available: usize,
    },
    #[error("the box at byte {offset} has size {size}, under its 8-byte header (or a 64-bit or to-the-end size, which this writer never writes)")]
    BadSize { offset: usize, size: u64 },
}

/// The boxes one after another in `data` (a file, or a container box's
/// body), with 32-bit sizes as this module writes them; ends after the last
/// whole box, or with the error that stops the walk.
pub fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes {
        data,
        at: 0,
        failed: false,
    }
}

/// The iterator [`boxes`] returns.
pub struct Boxes<'a> {
    data: &'a [u8],
    at: usize,
    failed: bool,
}

impl Iterator for Boxes<'_> {
    type Item = Result<BoxHeader, BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.data.get(self.at..).filter(|r| !r.is_empty())?;
        let header = match rest {
            [a, b, c, d, k0, k1, k2, k3, ..] => {
                (u32::from_be_bytes([*a, *b, *c, *d]), [*k0, *k1, *k2, *k3])
            }
            _ => {
                self.failed = true;
                return Some(Err(BoxError::Truncated {
                    offset: self.at,
                    size: 8,
                    available: rest.len(),
                }));
            }
        };
        let (size, kind) = (header.0 as u64, header.1);
        let offset = self.at;
        self.failed = true;
        if size < 8 {
            return Some(Err(BoxError::BadSize { offset, size }));
        }
        if size > rest.len() as u64 {
            return Some(Err(BoxError::Truncated {
                offset,
                size,
                available: rest.len(),
            }));
        }
        self.failed = false;
        self.at += size as usize;
        Some(Ok(BoxHeader {
            kind,
            offset,
            size: size as usize,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::media::annexb::NAL_AUD;

    /// Access units from x264 through ffmpeg: constrained baseline, an access
    /// unit delimiter before each, SPS and PPS before each IDR (every `keyint`
    /// frames), x264's SEI in the first.
    fn x264_stream(size: &str, frames: usize, keyint: u32) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x264.h264");
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=30"))
            .args(["-frames:v", &frames.to_string(), "-c:v", "libx264"])
            .args(["-profile:v", "baseline", "-x264-params"])
            .arg(format!("aud=1:keyint={keyint}:scenecut=0"))
            .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"])
            .arg(&path)
            .output()
            .expect("ffmpeg (Debian package ffmpeg) makes the test stream");
        assert!(
            out.status.success(),
            "ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let data = std::fs::read(&path).unwrap();
        // An access unit starts at its delimiter's start code.
        let mut starts: Vec<usize> = annexb::nal_units(&data)
            .map(|n| n.unwrap())
            .filter(|n| n.kind() == NAL_AUD)
            .map(|n| n.offset - if data[n.offset - 4] == 0 { 4 } else { 3 })
            .collect();
        assert_eq!(starts.len(), frames, "one delimiter a frame");
        starts.push(data.len());
        starts
            .windows(2)
            .map(|w| data[w[0]..w[1]].to_vec())
            .collect()
    }

    /// Access units from this crate's own encoder (openh264) for a picture
    /// that moves; IDRs at frame 0, at each of `keyframes`, and wherever its
    /// periodic keyframes fall.
    #[cfg(feature = "h264")]
    fn openh264_stream(w: u32, h: u32, n: usize, keyframes: &[usize]) -> Vec<Vec<u8>> {
        use crate::backend::table::ConfigText;
        use crate::backend::Kind;
        use crate::codecs::Payload;
        use crate::config::{Config, Overrides};
        use crate::media::convert;
        use crate::media::frame::{Frame, PixelFormat, StreamInfo};

        let cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        let table = cfg.backend(Kind::Codec, "h264");
        let mut codec = (crate::registry::codec("h264").unwrap().open)(&table).unwrap();
        let mut frame = Frame::empty();
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        let mut aus = Vec::new();
        for i in 0..n {
            for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
                let (x, y) = (p % w as usize, p / w as usize);
                px.copy_from_slice(&[(x + 3 * i) as u8, (y + i) as u8, ((x ^ y) + 5 * i) as u8]);
            }
            convert::from_rgb24(&rgb, w, h, PixelFormat::Rgb24, &mut frame);
            if i == 0 {
                let stream = StreamInfo {
                    frame: frame.info,
                    fps: 30.0,
                };
                codec.begin(&stream).unwrap();
            }
            if keyframes.contains(&i) {
                codec.request_keyframe();
            }
            let mut out = Vec::new();
            let e = codec.encode(&frame, &mut out).unwrap();
            assert_eq!(
                e.payload,
                Payload::Written,
                "frame {i}: openh264 skipped it"
            );
            if i == 0 || keyframes.contains(&i) {
                assert!(e.keyframe, "frame {i}: an IDR was asked for");
            }
            aus.push(out);
        }
        aus
    }

    /// Times `gaps_us` apart (in turn), from an arbitrary clock reading.
    fn times(n: usize, gaps_us: &[u64]) -> Vec<u64> {
        let mut t = 1_234_567_890;
        (0..n)
            .map(|i| {
                let now = t;
                t += gaps_us[i % gaps_us.len()];
                now
            })
            .collect()
    }

    /// One file of `aus` at `times`, and where each fragment ends in it.
    fn write_all(aus: &[Vec<u8>], times: &[u64]) -> (Vec<u8>, Vec<usize>) {
        let mut writer = Fmp4Writer::new();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (i, (au, &t)) in aus.iter().zip(times).enumerate() {
            let before = out.len();
            let p = writer
                .push(au, t, &mut out)
                .unwrap_or_else(|e| panic!("frame {i}: {e}"));
            assert_eq!(p.init_bytes > 0, i == 0, "frame {i}: init segment");
            assert_eq!(p.init_bytes + p.fragment_bytes, out.len() - before);
            ends.push(out.len());
        }
        (out, ends)
    }

    /// The box layout of a whole file, checked: `ftyp`, `moov`, then `moof` +
    /// `mdat` pairs. Returns each sample's NAL unit types, read through their
    /// 4-byte lengths.
    fn samples(file: &[u8]) -> Vec<Vec<u8>> {
        let tops: Vec<BoxHeader> = boxes(file).map(|b| b.unwrap()).collect();
        assert_eq!(&tops[0].kind, b"ftyp");
        assert_eq!(&tops[1].kind, b"moov");
        let mut out = Vec::new();
        for pair in tops[2..].chunks(2) {
            assert_eq!(&pair[0].kind, b"moof", "{pair:?}");
            assert_eq!(&pair[1].kind, b"mdat", "{pair:?}");
            let mut body = &file[pair[1].body()];
            let mut kinds = Vec::new();
            while !body.is_empty() {
                let len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
                kinds.push(body[4] & 0x1f);
                body = &body[4 + len..];
            }
            out.push(kinds);
        }
        out
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// What ffprobe sees, decoding every frame of the file (or of the file
    /// read through a pipe, as a stream): codec, width, height, frames, and
    /// its complaints.
    fn probe(path: &Path, piped: bool) -> (String, u64, u64, u64, String) {
        let mut ffprobe = Command::new("ffprobe");
        ffprobe
            .args(["-v", "error", "-count_frames", "-show_entries"])
            .args([
                "stream=nb_read_frames,codec_name,width,height",
                "-of",
                "json",
            ]);
        if piped {
            ffprobe
                .arg("pipe:0")
                .stdin(std::fs::File::open(path).unwrap());
        } else {
            ffprobe.arg(path);
        }
        let out = ffprobe
            .output()
            .expect("ffprobe (Debian package ffmpeg) checks the file");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ffprobe's output is not JSON ({e}): {out:?}"));
        let s = &json["streams"][0];
        let frames = s["nb_read_frames"].as_str().unwrap_or("0").parse().unwrap();
        (
            s["codec_name"].as_str().unwrap_or("none").to_string(),
            s["width"].as_u64().unwrap_or(0),
            s["height"].as_u64().unwrap_or(0),
            frames,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// ffmpeg decodes the whole file; returns what it said on stderr.
    fn ffmpeg_decode(path: &Path) -> String {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg (Debian package ffmpeg) decodes the file");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ffmpeg failed: {stderr}");
        stderr
    }

    /// Each packet's time in seconds and whether ffprobe calls it a keyframe.
    fn packets(path: &Path) -> Vec<(f64, bool)> {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v"])
            .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe (Debian package ffmpeg) checks the file");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let (pts, flags) = line.split_once(',').unwrap();
                (pts.parse().unwrap(), flags.starts_with('K'))
            })
            .collect()
    }

    /// A whole file plays, and a cut one plays up to its last whole fragment.
    fn check_plays(aus: &[Vec<u8>], size: (u64, u64)) {
        let n = aus.len();
        let (file, ends) = write_all(aus, &times(n, &[33_333]));
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "whole.mp4", &file);
        let (codec, w, h, frames, complaints) = probe(&path, false);
        assert_eq!((codec.as_str(), (w, h), frames), ("h264", size, n as u64));
        assert_eq!(complaints, "", "ffprobe complained");
        assert_eq!(ffmpeg_decode(&path), "", "ffmpeg complained");
        eprintln!(
            "{n} frames: {} bytes, {} in the first push (init + IDR)",
            file.len(),
            ends[0]
        );

        // kill -9 between two fragments, then in the middle of the last one's
        // mdat: ffprobe reads the file up to its last whole fragment.
        for (cut, whole) in [(ends[n / 2 - 1], n / 2), (ends[n - 1] - 10, n - 1)] {
            let path = write_file(dir.path(), "cut.mp4", &file[..cut]);
            let (_, _, _, frames, complaints) = probe(&path, false);
            eprintln!("cut at byte {cut}: {frames} frames; ffprobe said {complaints:?}");
            assert_eq!(frames, whole as u64, "cut at byte {cut} of {}", file.len());
        }
        // A cut inside a moof. ffmpeg (5.1) reads every moof of a seekable
        // file while opening it, and one cut short in its trun or tfdt fails
        // the open ("error reading header"), as it does for ffmpeg's own
        // fragmented output. Read as a stream (a pipe), the whole fragments
        // play; trimmed to its last whole box (`boxes`), the file plays.
        let cut = ends[n / 3] + 40;
        let path = write_file(dir.path(), "cut.mp4", &file[..cut]);
        let (_, _, _, frames, complaints) = probe(&path, true);
        eprintln!("cut at byte {cut}, piped: {frames} frames; ffprobe said {complaints:?}");
        assert_eq!(frames, n as u64 / 3 + 1, "cut at byte {cut}, piped");
        let trimmed = boxes(&file[..cut])
            .map_while(Result::ok)
            .last()
            .map_or(0, |b| b.offset + b.size);
        assert_eq!(trimmed, ends[n / 3]);
        let path = write_file(dir.path(), "trimmed.mp4", &file[..trimmed]);
        let (_, _, _, frames, complaints) = probe(&path, false);
        assert_eq!((frames, complaints.as_str()), (n as u64 / 3 + 1, ""));
    }

    #[test]
    fn x264_stream_plays_and_survives_a_cut() {
        let aus = x264_stream("320x240", 60, 30);
        check_plays(&aus, (320, 240));
        // Delimiters and parameter sets stay out of the samples.
        let (file, _) = write_all(&aus, &times(aus.len(), &[33_333]));
        for (i, kinds) in samples(&file).iter().enumerate() {
            assert!(
                kinds
                    .iter()
                    .all(|k| matches!(*k, NAL_SLICE | NAL_IDR | NAL_SEI)),
                "sample {i}: NAL types {kinds:?}"
            );
            assert_eq!(kinds.contains(&NAL_IDR), i % 30 == 0, "sample {i}");
        }
    }

    #[cfg(feature = "h264")]
    #[test]
    fn openh264_stream_plays_and_survives_a_cut() {
        let aus = openh264_stream(320, 240, 90, &[45]);
        check_plays(&aus, (320, 240));
        // The keyframes are sync samples, and the others not.
        let (file, _) = write_all(&aus, &times(aus.len(), &[33_333]));
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "keys.mp4", &file);
        let keys: Vec<bool> = packets(&path).iter().map(|p| p.1).collect();
        let idrs: Vec<bool> = aus
            .iter()
            .map(|au| annexb::check_access_unit(au).unwrap().keyframe)
            .collect();
        assert_eq!(keys, idrs);
        assert!(keys[0] && keys[45]);
    }

    #[test]
    fn variable_gaps_keep_their_times() {
        let aus = x264_stream("320x240", 60, 30);
        // 33 ms, 50 ms, and a stall of a second.
        let t = times(aus.len(), &[33_000, 50_000, 33_000, 1_000_000]);
        let (file, _) = write_all(&aus, &t);
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "vfr.mp4", &file);
        let got = packets(&path);
        assert_eq!(got.len(), aus.len());
        for (i, ((pts, key), want)) in got.iter().zip(&t).enumerate() {
            let want = (want - t[0]) as f64 / 1e6;
            assert!(
                (pts - want).abs() < 1.0 / TIMESCALE as f64,
                "frame {i}: pts {pts} s, sent at {want} s"
            );
            assert_eq!(*key, i % 30 == 0, "frame {i}: keyframe flag");
        }
        assert_eq!(ffmpeg_decode(&path), "");
    }

    #[test]
    fn a_delta_first_is_refused_and_a_keyframe_then_starts() {
        let aus = x264_stream("320x240", 3, 30);
        let mut w = Fmp4Writer::new();
        let mut out = vec![7];
        assert_eq!(
            w.push(&aus[1], 0, &mut out),
            Err(Mp4Error::FirstNotKeyframe)
        );
        assert_eq!(out, [7], "nothing written");
        let p = w.push(&aus[0], 10, &mut out).unwrap();
        assert!(p.init_bytes > 0 && p.keyframe);
        assert_eq!(w.picture_size(), Some((320, 240)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let aus = x264_stream("320x240", 2, 30);
        let mut w = Fmp4Writer::new();
        let mut out = Vec::new();
        let err = w.push(b"not H.264", 0, &mut out).unwrap_err();
        assert_eq!(
            err,
            Mp4Error::AccessUnit {
                frame: 0,
                source: AnnexBError::NoStartCode
            }
        );
        assert!(std::error::Error::source(&err).is_some(), "keeps its cause");
        w.push(&aus[0], 0, &mut out).unwrap();
        let len = out.len();
        let err = w.push(&[0, 0, 1, 0x41, 7, 0, 0, 1, 0xc1], 40_000, &mut out);
        assert_eq!(
            err,
            Err(Mp4Error::AccessUnit {
                frame: 1,
                source: AnnexBError::ForbiddenBit { offset: 8 }
            })
        );
        assert_eq!(out.len(), len);
        w.push(&aus[1], 40_000, &mut out).unwrap();
    }

    /// `au` without its NAL units of type `kind`.
    fn without(au: &[u8], kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in annexb::nal_units(au).map(|n| n.unwrap()) {
            if nal.kind() != kind {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal.bytes);
            }
        }
        out
    }

    #[test]
    fn a_first_keyframe_needs_both_parameter_sets() {
        let aus = x264_stream("320x240", 1, 30);
        let mut w = Fmp4Writer::new();
        let mut out = Vec::new();
        for (kind, which) in [(NAL_SPS, "SPS"), (NAL_PPS, "PPS")] {
            let err = w.push(&without(&aus[0], kind), 0, &mut out);
            assert_eq!(err, Err(Mp4Error::MissingParameterSet { which }));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_new_picture_size_or_parameter_set_is_refused() {
        let small = x264_stream("320x240", 31, 30);
        let big = x264_stream("352x288", 1, 30);
        let mut w = Fmp4Writer::new();
        let mut out = Vec::new();
        w.push(&small[0], 0, &mut out).unwrap();
        w.push(&small[1], 33_000, &mut out).unwrap();
        let len = out.len();
        let err = w.push(&big[0], 66_000, &mut out).unwrap_err();
        assert_eq!(
            err,
            Mp4Error::SizeChanged {
                frame: 2,
                from: (320, 240),
                to: (352, 288)
            }
        );
        assert!(err.to_string().contains("320x240 to 352x288"), "{err}");
        // The second IDR repeats the first's sets: taken. With its PPS
        // changed: refused.
        let idr = &small[30];
        let pps = annexb::nal_units(idr)
            .map(|n| n.unwrap())
            .find(|n| n.kind() == NAL_PPS)
            .unwrap();
        let mut changed = idr.clone();
        changed[pps.offset + pps.bytes.len() - 1] ^= 0x10;
        assert_eq!(
            w.push(&changed, 66_000, &mut out),
            Err(Mp4Error::ParameterSetChanged {
                frame: 2,
                which: "PPS",
                offset: pps.offset
            })
        );
        assert_eq!(out.len(), len, "nothing written on an error");
        assert!(w.push(idr, 66_000, &mut out).unwrap().keyframe);
    }

    #[test]
    fn time_must_grow_by_a_tick() {
        let aus = x264_stream("320x240", 3, 30);
        let mut w = Fmp4Writer::new();
        let mut out = Vec::new();
        w.push(&aus[0], 1_000_000, &mut out).unwrap();
        w.push(&aus[1], 1_033_000, &mut out).unwrap();
        // The same time, 5 µs later (under a 90 kHz tick), earlier, before
        // the first frame.
        for t in [1_033_000, 1_033_005, 1_000_000, 0] {
            assert_eq!(
                w.push(&aus[2], t, &mut out),
                Err(Mp4Error::TimeNotIncreasing {
                    frame: 2,
                    previous_us: 1_033_000,
                    time_us: t
                })
            );
        }
        // A gap over 2^32 ticks (13 hours) does not fit a sample duration.
        let err = w.push(&aus[2], 1_033_000 + 14 * 3600 * 1_000_000, &mut out);
        assert!(
            matches!(err, Err(Mp4Error::TooLarge { frame: 2, .. })),
            "{err:?}"
        );
        w.push(&aus[2], 1_066_000, &mut out).unwrap();
    }

    #[test]
    fn the_first_duration_can_be_set() {
        let aus = x264_stream("320x240", 1, 30);
        for (duration, ticks) in [
            (Duration::from_millis(40), 3600),
            (Duration::ZERO, 1),
            (Duration::from_secs(1 << 40), u32::MAX),
        ] {
            let mut out = Vec::new();
            Fmp4Writer::with_first_duration(duration)
                .push(&aus[0], 0, &mut out)
                .unwrap();
            let moof = boxes(&out).nth(2).unwrap().unwrap();
            // The trun's duration field follows its type, version and flags,
            // sample_count and data_offset.
            let trun = out[moof.body()]
                .windows(4)
                .position(|w| w == b"trun")
                .unwrap()
                + moof.offset
                + 8;
            let field = &out[trun + 16..trun + 20];
            assert_eq!(u32::from_be_bytes(field.try_into().unwrap()), ticks);
        }
    }

    #[test]
    fn box_headers_read_back_say_what_is_wrong() {
        let aus = x264_stream("320x240", 2, 30);
        let (file, ends) = write_all(&aus, &[0, 33_333]);
        let whole: Vec<_> = boxes(&file).map(|b| b.unwrap().kind).collect();
        assert_eq!(
            whole,
            [*b"ftyp", *b"moov", *b"moof", *b"mdat", *b"moof", *b"mdat"]
        );
        // Cut in the last mdat: three whole boxes after the init segment.
        let cut: Vec<_> = boxes(&file[..ends[1] - 1]).collect();
        assert_eq!(cut.len(), 6);
        assert!(matches!(cut[5], Err(BoxError::Truncated { .. })), "{cut:?}");
        assert_eq!(
            boxes(&[0, 0, 0, 4, b'f', b'r', b'e', b'e']).next(),
            Some(Err(BoxError::BadSize { offset: 0, size: 4 }))
        );
        assert_eq!(
            boxes(&[0, 0, 0]).next(),
            Some(Err(BoxError::Truncated {
                offset: 0,
                size: 8,
                available: 3
            }))
        );
    }

    /// Mutated and random access units, pushed in turn: an answer, never a
    /// panic, and what was written stays whole boxes (the fuzz target
    /// `mp4_write` does this with coverage guidance).
    #[test]
    fn hostile_units_never_panic() {
        let aus = x264_stream("320x240", 10, 5);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut w = Fmp4Writer::new();
        let mut out = Vec::new();
        let mut written = 0;
        for round in 0..5_000u64 {
            let mut au = aus[rng.usize(..aus.len())].clone();
            if round % 3 == 0 {
                au = (0..rng.usize(..64)).map(|_| rng.u8(..4)).collect();
            } else {
                for _ in 0..rng.usize(0..4) {
                    let i = rng.usize(..au.len());
                    au[i] = rng.u8(..);
                }
                au.truncate(rng.usize(1..=au.len()));
            }
            if w.push(&au, round * 20_000, &mut out).is_ok() {
                written += 1;
            }
        }
        assert!(boxes(&out).all(|b| b.is_ok()));
        eprintln!("{written} of 5000 hostile units written");
        assert!(written > 100, "the mutations should leave some units whole");
    }
}
