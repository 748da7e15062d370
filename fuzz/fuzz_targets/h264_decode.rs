//! The h264 codec's decode, as a viewer runs it on payloads from a server:
//! the input is cut into access units (two length bytes before each) and fed
//! to one decoder in turn. Never panics or crashes (openh264's C++ included);
//! a picture that comes out has the stream's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::backend::table::ConfigText;
use livestream::backend::Kind;
use livestream::config::{Config, Overrides};
use livestream::media::frame::{Frame, FrameInfo, PixelFormat};

fuzz_target!(|data: &[u8]| {
    let cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
    let table = cfg.backend(Kind::Codec, "h264");
    let mut codec = (livestream::registry::codec("h264").unwrap().open)(&table).unwrap();
    let info = FrameInfo::packed(PixelFormat::I420, 64, 48).unwrap();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let unit = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[2 + unit.len()..];
        let mut frame = Frame::empty();
        frame.info = info;
        if codec.decode(&mut unit.to_vec(), &mut frame).is_ok() {
            assert_eq!(frame.data.len(), 64 * 48 * 3 / 2);
        }
    }
});
