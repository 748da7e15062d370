//! `media::annexb`, on an access unit from a peer or a file: never
//! panics; every NAL unit it yields lies inside the input, after a start code,
//! in order, without overlap; a unit that passes the check holds a picture.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::media::annexb::{check_access_unit, nal_units};

fuzz_target!(|data: &[u8]| {
    let mut end = 0;
    for nal in nal_units(data) {
        let Ok(nal) = nal else { break };
        assert!(nal.offset >= end + 3, "a start code before each unit");
        assert_eq!(&data[nal.offset..nal.offset + nal.bytes.len()], nal.bytes);
        assert_eq!(&data[nal.offset - 3..nal.offset], &[0, 0, 1]);
        assert!(nal.bytes[0] & 0x80 == 0);
        end = nal.offset + nal.bytes.len();
    }
    if let Ok(au) = check_access_unit(data) {
        assert!(au.slices >= 1 && au.nal_units >= au.slices);
        if let Some((w, h)) = au.sps_size {
            assert!(w >= 1 && h >= 1 && w <= 8192 && h <= 8192);
        }
    }
});
