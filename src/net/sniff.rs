//! Which protocol a connection speaks, from its first bytes: the native wire
//! protocol, the secure handshake, and HTTP share one port. A pure function of
//! the bytes seen so far; the connection's thread peeks and waits for more
//! (see `server/connection.rs`).
//!
//! The rules are tried in this order, and the first that matches decides
//! (`docs/protocol.md`):
//! 1. `LSTR` (the native client hello's magic) → native;
//! 2. any 2 bytes (a secure hello's little-endian length: 8 or 41), then
//!    `LSEC` → secure;
//! 3. 3 to 7 upper-case ASCII letters, then a space (`GET `, `OPTIONS `) → HTTP;
//! 4. anything else → native, whose handshake refuses it with a reason.
//!
//! Rule 1 first: a native hello whose version's low byte is 0x20 reads
//! `LSTR ` and would otherwise look like a method. No HTTP method is `LSTR`,
//! nor has `LSEC` in its third to sixth letters. A prefix that no rule decides
//! yet waits for more bytes, and a decision never changes with more bytes.

use super::protocol::{MAGIC as NATIVE, SECURE_MAGIC as SECURE};

/// The longest prefix [`sniff`] needs: a 7-letter method and its space.
pub const SNIFF_LEN: usize = 8;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    Native,
    /// A framed secure hello.
    Secure,
    Http,
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
    let letters = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let could_be_http = letters == n && n < SNIFF_LEN;
    if could_be_native || could_be_secure || could_be_http {
        return Speaks::NeedMore;
    }
    if (3..=7).contains(&letters) && first[letters] == b' ' {
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
        assert_eq!(sniff(b"OPTIONS * RTSP/1.0"), Speaks::Http);
        assert_eq!(sniff(b"GE"), Speaks::NeedMore);
        assert_eq!(sniff(b"GET"), Speaks::NeedMore, "the space may follow");
        assert_eq!(sniff(b"GO /"), Speaks::Native, "two letters are no method");
        assert_eq!(
            sniff(b"ABCDEFGH"),
            Speaks::Native,
            "eight letters are no method"
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
            b"OPTIONS ",
            b"\x16\x03\x01\x02\x00\x01\x00\x01",
            b"XYZZYXYZ",
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
