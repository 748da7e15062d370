//! `livestream.toml`, which a user writes: `Config::parse` on any text never
//! panics; an error that has a place names a line and column inside the
//! text, and prints (with its snippet and caret) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::backend::table::ConfigText;
use livestream::config::{Config, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = ConfigText {
        origin: "livestream.toml".into(),
        text: text.into(),
    };
    if let Err(e) = Config::parse(file, &Overrides::default()) {
        if let Some((line, column)) = e.position {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
            assert!(column >= 1, "column {column}: {e}");
        }
        let _ = e.to_string();
    }
});
