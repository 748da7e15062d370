//! `media::annexb`, on an access unit from a peer or a file: never
//! panics; every NAL unit it yields lies inside the input, after a start code,
//! in order, without overlap; a unit that passes the check holds a picture;
//! the stream-size check agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::media::annexb::{check_access_unit, check_stream_access_unit, nal_units};

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
    let checked = check_access_unit(data);
    if let Ok(au) = &checked {
        assert!(au.slices >= 1 && au.nal_units >= au.slices);
        if let Some((w, h)) = au.sps_size {
            assert!(w >= 1 && h >= 1 && w <= 8192 && h <= 8192);
        }
    }
    // Against a stream's size: accepted only when the plain check accepts it
    // and any parameter set in it declares that size.
    let in_stream = check_stream_access_unit(data, (1280, 720));
    match (&checked, &in_stream) {
        (Ok(au), Ok(same)) => assert!(au == same && au.sps_size.is_none_or(|s| s == (1280, 720))),
        (Ok(au), Err(_)) => assert!(au.sps_size.is_some_and(|s| s != (1280, 720))),
        (Err(_), Ok(_)) => panic!("the stream check accepted what the plain check refused"),
        (Err(_), Err(_)) => {}
    }
});
