//! `media::mp4::Fmp4Writer`, fed access units from a camera or an encoder: the
//! input is cut into access units (a gap byte in milliseconds, then two length
//! bytes before each), pushed in turn at growing (or, for a zero gap, equal)
//! times. Never panics; a failed push leaves the output as it was; what a push
//! writes is whole boxes (the init segment, then `moof` + `mdat`) whose `trun`
//! points at exactly the `mdat`'s sample, made of length-prefixed NAL units.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::media::mp4::{boxes, BoxHeader, Fmp4Writer};

fuzz_target!(|data: &[u8]| {
    let mut writer = Fmp4Writer::new();
    let mut out = Vec::new();
    let mut time_us = 0u64;
    let mut rest = data;
    while rest.len() >= 3 {
        time_us += rest[0] as u64 * 1000;
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        let unit = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[3 + unit.len()..];
        let before = out.len();
        match writer.push(unit, time_us, &mut out) {
            Ok(pushed) => {
                assert_eq!(
                    pushed.init_bytes + pushed.fragment_bytes,
                    out.len() - before
                );
                check(&out[before..], pushed.init_bytes > 0);
            }
            Err(e) => {
                assert_eq!(out.len(), before, "{e}: wrote bytes anyway");
                assert!(!e.to_string().is_empty());
            }
        }
    }
});

fn whole(data: &[u8]) -> Vec<BoxHeader> {
    boxes(data).map(|b| b.expect("whole boxes")).collect()
}

fn kinds(headers: &[BoxHeader]) -> Vec<[u8; 4]> {
    headers.iter().map(|b| b.kind).collect()
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().unwrap())
}

/// One push's bytes: [ftyp, moov,] moof, mdat, each consistent.
fn check(pushed: &[u8], init: bool) {
    let tops = whole(pushed);
    let want: &[[u8; 4]] = if init {
        &[*b"ftyp", *b"moov", *b"moof", *b"mdat"]
    } else {
        &[*b"moof", *b"mdat"]
    };
    assert_eq!(kinds(&tops), want);
    let (moof, mdat) = (tops[tops.len() - 2], tops[tops.len() - 1]);
    if init {
        let moov = whole(&pushed[tops[1].body()]);
        assert_eq!(kinds(&moov), [*b"mvhd", *b"trak", *b"mvex"]);
    }
    let moof_body = &pushed[moof.body()];
    let parts = whole(moof_body);
    assert_eq!(kinds(&parts), [*b"mfhd", *b"traf"]);
    let traf_body = &moof_body[parts[1].body()];
    let traf = whole(traf_body);
    assert_eq!(kinds(&traf), [*b"tfhd", *b"tfdt", *b"trun"]);
    let trun = &traf_body[traf[2].body()];
    // version/flags, sample_count, data_offset, duration, size, flags
    assert_eq!(u32_at(trun, 4), 1, "one sample");
    assert_eq!(u32_at(trun, 8) as usize, moof.size + 8, "data offset");
    let sample = &pushed[mdat.body()];
    assert_eq!(u32_at(trun, 16) as usize, sample.len(), "sample size");
    let mut nals = sample;
    while !nals.is_empty() {
        let len = u32_at(nals, 0) as usize;
        assert!(len >= 1 && 4 + len <= nals.len(), "NAL length {len}");
        nals = &nals[4 + len..];
    }
}
