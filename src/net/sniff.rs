//! Which protocol a connection speaks, from its first bytes: the native wire
//! protocol, the secure handshake, HTTP and RTSP share one port. A pure
//! function of the bytes seen so far; the connection's thread peeks and waits
//! for more (see `server/connection.rs`).
//!
//! The rules are tried in this order, and the first that matches decides
//! (`docs/protocol.md`):
//! 1. `LSTR` (the native client hello's magic) → native;
//! 2. any 2 bytes (a secure hello's little-endian length: 8 or 41), then
//!    `LSEC` → secure;
//! 3. a method token (3 to 13 upper-case ASCII letters or `_`) and a space:
//!    - an RTSP method HTTP does not have (`DESCRIBE`, `SETUP`, `PLAY`,
//!      `PAUSE`, `TEARDOWN`, `GET_PARAMETER`, `SET_PARAMETER`, `ANNOUNCE`,
//!      `RECORD`, `REDIRECT`) → RTSP;
//!    - `OPTIONS`, which both have: RTSP when its request line (up to its
//!      line feed, within [`SNIFF_LEN`] bytes) ends in `RTSP/1.0`, else HTTP;
//!    - any other of 3 to 7 letters (`GET `, `HEAD `, `POST `) → HTTP;
//! 4. anything else → native, whose handshake refuses it with a reason.
//!
//! Rule 1 first: a native hello whose version's low byte is 0x20 reads
//! `LSTR ` and would otherwise look like a method. No method is `LSTR`,
//! nor has `LSEC` in its third to sixth letters. A prefix that no rule decides
//! yet waits for more bytes, and a decision never changes with more bytes.

use super::protocol::{MAGIC as NATIVE, SECURE_MAGIC as SECURE};

/// The longest prefix [`sniff`] needs: an `OPTIONS` request line.
pub const SNIFF_LEN: usize = 512;
/// The longest method token.
const MAX_METHOD: usize = 13;

/// RTSP 1.0's methods that HTTP does not have.
const RTSP_ONLY: [&[u8]; 10] = [
    b"DESCRIBE",
    b"SETUP",
    b"PLAY",
    b"PAUSE",
    b"TEARDOWN",
    b"GET_PARAMETER",
    b"SET_PARAMETER",
    b"ANNOUNCE",
    b"RECORD",
    b"REDIRECT",
];

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    Native,
    /// A framed secure hello.
    Secure,
    Http,
    Rtsp,
    /// Not yet decided: wait for more bytes (at most [`SNIFF_LEN`]).
    NeedMore,
}

/// Decides from the first bytes of a connection.
pub fn sniff(first: &[u8]) -> Speaks {
    let first = &first[..first.len().min(SNIFF_LEN)];
    let n = first.len();
    if first.starts_with(&NATIVE) {
        return Speaks::Native;
    }
    if n >= 6 && first[2..6] == SECURE {
        return Speaks::Secure;
    }
    let could_be_native = n < NATIVE.len() && NATIVE.starts_with(first);
    let could_be_secure = n < 6 && SECURE.starts_with(&first[n.min(2)..]);
    let token = first
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'_')
        .count();
    let could_be_method = token == n && n <= MAX_METHOD;
    if could_be_native || could_be_secure || could_be_method {
        return Speaks::NeedMore;
    }
    if !(3..=MAX_METHOD).contains(&token) || first[token] != b' ' {
        return Speaks::Native;
    }
    let method = &first[..token];
    if RTSP_ONLY.contains(&method) {
        return Speaks::Rtsp;
    }
    if method == b"OPTIONS" {
        return match first.iter().position(|&b| b == b'\n') {
            Some(end) if first[..end].trim_ascii_end().ends_with(b" RTSP/1.0") => Speaks::Rtsp,
            Some(_) => Speaks::Http,
            None if n < SNIFF_LEN => Speaks::NeedMore,
            None => Speaks::Http,
        };
    }
    if token <= 7 && !method.contains(&b'_') {
        Speaks::Http
    } else {
        Speaks::Native
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_and_its_boundaries() {
        assert_eq!(sniff(b""), Speaks::NeedMore);
        assert_eq!(sniff(b"LS"), Speaks::NeedMore);
        assert_eq!(sniff(b"LSTR\x00\x01"), Speaks::Native);
        assert_eq!(sniff(b"\x08\x00LSEC\x01"), Speaks::Secure);
        assert_eq!(sniff(b"\x29\x00LSEC\x01"), Speaks::Secure);
        assert_eq!(sniff(b"\x08\x00LS"), Speaks::NeedMore);
        assert_eq!(sniff(b"\x08\x00LSXX"), Speaks::Native);
        assert_eq!(sniff(b"\x08"), Speaks::NeedMore, "a length's first byte");
        assert_eq!(sniff(b"GET / HTTP/1.1"), Speaks::Http);
        assert_eq!(
            sniff(b"OPTIONS * RTSP/1.0"),
            Speaks::NeedMore,
            "its line goes on"
        );
        assert_eq!(sniff(b"OPTIONS * RTSP/1.0\r\n"), Speaks::Rtsp);
        assert_eq!(
            sniff(b"OPTIONS rtsp://h:8554/stream RTSP/1.0\n"),
            Speaks::Rtsp
        );
        assert_eq!(sniff(b"OPTIONS * HTTP/1.1\r\n"), Speaks::Http);
        assert_eq!(
            sniff(&[b"OPTIONS /".as_slice(), &[b'a'; 600]].concat()),
            Speaks::Http
        );
        assert_eq!(sniff(b"DESCRIBE rtsp://h/ RTSP/1.0"), Speaks::Rtsp);
        assert_eq!(sniff(b"GET_PARAMETER rtsp://h/ RTSP/1.0"), Speaks::Rtsp);
        assert_eq!(sniff(b"GET_PARAMETE"), Speaks::NeedMore);
        assert_eq!(sniff(b"PLAY "), Speaks::Rtsp);
        assert_eq!(sniff(b"GET_X /"), Speaks::Native, "no such method");
        assert_eq!(sniff(b"PROPFIND /"), Speaks::Native, "8 letters, not RTSP");
        assert_eq!(sniff(b"GE"), Speaks::NeedMore);
        assert_eq!(sniff(b"GET"), Speaks::NeedMore, "the space may follow");
        assert_eq!(sniff(b"GO /"), Speaks::Native, "two letters are no method");
        assert_eq!(
            sniff(b"ABCDEFGHIJKLMN"),
            Speaks::Native,
            "fourteen letters are no method"
        );
        assert_eq!(
            sniff(b"ABCDEFGH"),
            Speaks::NeedMore,
            "RTSP has longer methods"
        );
        assert_eq!(sniff(b"get /"), Speaks::Native, "methods are upper case");
        assert_eq!(sniff(b"GET\t/"), Speaks::Native);
    }

    #[test]
    fn a_native_hello_of_version_0x20_is_not_http() {
        // The collision a client written from the docs found: version 32's low
        // byte is a space, so the hello starts `LSTR `.
        let hello = [b'L', b'S', b'T', b'R', 0x20, 0x00, 0, 0];
        assert_eq!(sniff(&hello), Speaks::Native);
        assert_eq!(sniff(&hello[..4]), Speaks::Native);
    }

    #[test]
    fn decided_prefixes_stay_decided() {
        // Every rule decides on a prefix the longer input agrees with.
        for input in [
            &b"LSTR\x00\x01\x00\x00"[..],
            b"\x08\x00LSEC\x01\x00",
            b"ABLSEC\x01\x00",
            b"GET / HT",
            b"OPTIONS * RTSP/1.0\r\n",
            b"OPTIONS / HTTP/1.1\r\n",
            b"SETUP rtsp://h/ RTSP/1.0",
            b"\x16\x03\x01\x02\x00\x01\x00\x01",
            b"XYZZYXYZXYZZYX",
        ] {
            let full = sniff(input);
            assert_ne!(full, Speaks::NeedMore, "{input:?}");
            for n in 0..input.len() {
                let part = sniff(&input[..n]);
                assert!(part == Speaks::NeedMore || part == full, "{input:?}[..{n}]");
            }
        }
    }
}
