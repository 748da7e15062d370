//! The secure handshake's messages as functions over byte slices: each message
//! is built into a caller's buffer and parsed from `&[u8]` with a precise
//! [`MessageError`]; with the frame around every message, and the Noise and
//! SPAKE2 steps both sides share. No sockets and no clocks: the two drivers
//! (`server_auth.rs`, `viewer_auth.rs`) read and write frames and call these, so
//! every rule of the format is unit-tested here on bytes.
//!
//! The messages, in order (`docs/protocol.md` has them byte by byte), each in a
//! frame (a `u16` little-endian length and the body):
//!
//! 1. viewer → server, [hello](build_hello): `LSEC`, version 1, mode (0 paired
//!    before, 1 pairing now), flags (bit 0: the viewer has AES hardware), a
//!    reserved byte, and when pairing its SPAKE2 message (33 bytes).
//! 2. server → viewer, [reply](build_reply): `LSEC`, version 1, status (0 go on,
//!    1 this server is plaintext only, 2 refused), the cipher chosen (0
//!    ChaChaPoly, 1 AESGCM), a reserved byte, then the server's SPAKE2 message
//!    (pairing) or a refusal text.
//! 3. to 5. Noise XX, or XXpsk3 with the SPAKE2 key as the PSK when pairing, with
//!    both messages above in the prologue ([`noise_state`]); the payloads of 4
//!    and 5 are the server's and the viewer's names ([`name_payload`]).
//! 6. server → viewer, the [verdict](build_verdict), sealed as the server's
//!    first record; or, when the handshake failed at the server (a wrong pairing
//!    code), an empty frame and then a frame with the reason in plaintext.
//!
//! Pure functions: they run on whichever thread drives the handshake (a server
//! connection thread, the viewer's calling thread).

use std::io::{IoSlice, Read, Write};

use spake2::{Ed25519Group, Identity, Password, Spake2};

use super::error::{HandshakeMessage, MessageError, Result, SecureError};
use super::suite::{params, Cipher, Role, TAG_LEN};
use super::trust::{KeyPair, PairingCode, PublicKey, MAX_NAME};
use crate::net::io::write_all_vectored;

pub const MAGIC: [u8; 4] = crate::net::protocol::SECURE_MAGIC;
pub const VERSION: u8 = 1;
/// Handshake frames are small; a longer one is refused before it is read.
pub const MAX_HANDSHAKE_FRAME: usize = 2048;
/// The fixed part of the hello and of the reply.
pub const HELLO_LEN: usize = 8;
/// A SPAKE2 message on Ed25519: a side byte and a point.
pub const SPAKE_LEN: usize = 33;
/// The longest hello: a pairing one.
pub const MAX_HELLO: usize = HELLO_LEN + SPAKE_LEN;
/// The longest reason text a server sends (in a reply or a verdict); longer ones
/// are cut at a character boundary. The viewer shows at most this much.
pub const MAX_REASON: usize = 1024;

const MODE_PAIRED: u8 = 0;
const MODE_PAIRING: u8 = 1;
const FLAG_AES: u8 = 1;
const STATUS_GO: u8 = 0;
const STATUS_PLAINTEXT: u8 = 1;
const STATUS_REFUSED: u8 = 2;
const VERDICT_WELCOME: u8 = 0;
const VERDICT_NOT_PAIRED: u8 = 1;

const SPAKE_VIEWER: &[u8] = b"livestream viewer";
const SPAKE_SERVER: &[u8] = b"livestream server";
const PROLOGUE: &[u8] = b"livestream secure v1\0";

// ---- frames ---------------------------------------------------------------------

/// The body length a frame header announces, checked against the limit before
/// a byte of the body is read.
pub fn frame_len(header: [u8; 2], message: HandshakeMessage) -> Result<usize> {
    let len = u16::from_le_bytes(header) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(MessageError::TooLong {
            message,
            len,
            max: MAX_HANDSHAKE_FRAME,
        }
        .into());
    }
    Ok(len)
}

/// Reads one frame into `buf`; returns its body's length.
pub fn read_frame(
    r: &mut impl Read,
    buf: &mut [u8; MAX_HANDSHAKE_FRAME],
    message: HandshakeMessage,
) -> Result<usize> {
    let mut header = [0u8; 2];
    r.read_exact(&mut header)
        .map_err(SecureError::io(message))?;
    let len = frame_len(header, message)?;
    r.read_exact(&mut buf[..len])
        .map_err(SecureError::io(message))?;
    Ok(len)
}

/// Writes `body` as one frame (one `writev` when the socket takes it all).
pub fn write_frame(w: &mut impl Write, body: &[u8], message: HandshakeMessage) -> Result<()> {
    debug_assert!(body.len() <= MAX_HANDSHAKE_FRAME);
    let len = (body.len() as u16).to_le_bytes();
    write_all_vectored(w, &mut [IoSlice::new(&len), IoSlice::new(body)])
        .map_err(SecureError::io(message))
}

// ---- 1. hello ---------------------------------------------------------------------

/// The viewer's hello, as the server reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The viewer's SPAKE2 message when it is pairing now.
    pub pairing: Option<&'a [u8; SPAKE_LEN]>,
    /// The viewer has AES in hardware.
    pub aes: bool,
}

/// Builds a hello into `out`; returns its length.
pub fn build_hello(out: &mut [u8; MAX_HELLO], hello: &Hello) -> usize {
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = if hello.pairing.is_some() {
        MODE_PAIRING
    } else {
        MODE_PAIRED
    };
    out[6] = if hello.aes { FLAG_AES } else { 0 };
    out[7] = 0;
    match hello.pairing {
        Some(spake) => {
            out[HELLO_LEN..].copy_from_slice(spake);
            MAX_HELLO
        }
        None => HELLO_LEN,
    }
}

/// Checks the fixed start both hello and reply share: length, magic, version.
fn check_start(body: &[u8], message: HandshakeMessage) -> std::result::Result<(), MessageError> {
    if body.len() < HELLO_LEN {
        return Err(MessageError::Truncated {
            message,
            len: body.len(),
            need: HELLO_LEN,
        });
    }
    let found = [body[0], body[1], body[2], body[3]];
    if found != MAGIC {
        return Err(MessageError::BadMagic { message, found });
    }
    if body[4] != VERSION {
        return Err(MessageError::Version {
            message,
            found: body[4],
            ours: VERSION,
        });
    }
    Ok(())
}

/// Parses a viewer's hello. The reserved byte and unknown flags are ignored.
pub fn parse_hello(body: &[u8]) -> std::result::Result<Hello<'_>, MessageError> {
    check_start(body, HandshakeMessage::Hello)?;
    let aes = body[6] & FLAG_AES != 0;
    let rest = &body[HELLO_LEN..];
    match (body[5], rest.len()) {
        (MODE_PAIRED, 0) => Ok(Hello { pairing: None, aes }),
        (MODE_PAIRING, SPAKE_LEN) => Ok(Hello {
            pairing: rest.try_into().ok(),
            aes,
        }),
        (mode, extra) => Err(MessageError::Mode { mode, extra }),
    }
}

// ---- 2. reply ---------------------------------------------------------------------

/// The server's reply to a hello.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Go on with `cipher`; `pairing` is the server's SPAKE2 message when the
    /// viewer is pairing (empty otherwise).
    Go { cipher: Cipher, pairing: &'a [u8] },
    /// This server runs without encryption; the reason, as text.
    PlaintextOnly { reason: &'a [u8] },
    /// Refused; the reason, as text.
    Refused { reason: &'a [u8] },
}

/// Builds a reply into `out`; returns its length. A reason longer than
/// [`MAX_REASON`] is cut.
pub fn build_reply(out: &mut [u8; MAX_HANDSHAKE_FRAME], reply: &Reply) -> usize {
    let (status, cipher, rest) = match reply {
        Reply::Go { cipher, pairing } => (STATUS_GO, *cipher as u8, *pairing),
        Reply::PlaintextOnly { reason } => (STATUS_PLAINTEXT, 0, cut_reason(reason)),
        Reply::Refused { reason } => (STATUS_REFUSED, 0, cut_reason(reason)),
    };
    let rest = &rest[..rest.len().min(MAX_HANDSHAKE_FRAME - HELLO_LEN)];
    out[..4].copy_from_slice(&MAGIC);
    out[4..HELLO_LEN].copy_from_slice(&[VERSION, status, cipher, 0]);
    out[HELLO_LEN..HELLO_LEN + rest.len()].copy_from_slice(rest);
    HELLO_LEN + rest.len()
}

/// Parses the server's reply. What follows the fixed part is returned as it is:
/// [`reply_spake`] checks a pairing message, and a reason is shown as text.
pub fn parse_reply(body: &[u8]) -> std::result::Result<Reply<'_>, MessageError> {
    check_start(body, HandshakeMessage::Reply)?;
    let rest = &body[HELLO_LEN..];
    match body[5] {
        STATUS_GO => {
            let cipher = Cipher::from_u8(body[6]).ok_or(MessageError::Cipher(body[6]))?;
            Ok(Reply::Go {
                cipher,
                pairing: rest,
            })
        }
        STATUS_PLAINTEXT => Ok(Reply::PlaintextOnly { reason: rest }),
        STATUS_REFUSED => Ok(Reply::Refused { reason: rest }),
        status => Err(MessageError::Status(status)),
    }
}

/// The server's SPAKE2 message in a reply to a pairing viewer.
pub fn reply_spake(pairing: &[u8]) -> std::result::Result<&[u8; SPAKE_LEN], MessageError> {
    pairing.try_into().map_err(|_| MessageError::PairingData {
        found: pairing.len(),
    })
}

// ---- 3 to 5. Noise --------------------------------------------------------------

/// The Noise handshake for one side: pairing (with the PSK) or not, bound to the
/// hello and the reply by the prologue, so a change to either (a downgraded
/// cipher, a swapped pairing message) fails it.
pub fn noise_state(
    keys: &KeyPair,
    cipher: Cipher,
    psk: Option<&[u8; 32]>,
    [hello, reply]: [&[u8]; 2],
    role: Role,
) -> Result<snow::HandshakeState> {
    let prologue = [PROLOGUE, hello, reply].concat();
    let builder = snow::Builder::new(params(cipher, psk.is_some()))
        .local_private_key(&keys.private)
        .and_then(|b| b.prologue(&prologue));
    let builder = match psk {
        Some(psk) => builder.and_then(|b| b.psk(3, psk)),
        None => builder,
    };
    builder
        .and_then(|b| match role {
            Role::Viewer => b.build_initiator(),
            Role::Server => b.build_responder(),
        })
        .map_err(SecureError::NoiseSetup)
}

/// Writes the next Noise message with `payload` into `out`; returns its length.
pub fn noise_write(
    noise: &mut snow::HandshakeState,
    payload: &[u8],
    out: &mut [u8; MAX_HANDSHAKE_FRAME],
    message: HandshakeMessage,
) -> Result<usize> {
    noise
        .write_message(payload, out)
        .map_err(SecureError::noise(message))
}

/// Reads a Noise message; returns the payload's length in `out`.
pub fn noise_read(
    noise: &mut snow::HandshakeState,
    msg: &[u8],
    out: &mut [u8; MAX_HANDSHAKE_FRAME],
    message: HandshakeMessage,
) -> Result<usize> {
    noise
        .read_message(msg, out)
        .map_err(SecureError::noise(message))
}

/// The peer's static key, once its Noise message carrying it was read.
pub fn remote_key(noise: &snow::HandshakeState, from: Role) -> Result<PublicKey> {
    noise
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or(SecureError::NoStaticKey(from))
}

/// A name as the payload of messages 4 and 5: at most [`MAX_NAME`] bytes (the
/// receiver cleans it up and cuts it to characters).
pub fn name_payload(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(MAX_NAME)]
}

// ---- pairing: SPAKE2 ------------------------------------------------------------

/// This side's SPAKE2 state and message for `code`.
pub fn spake_start(code: &PairingCode, role: Role) -> (Spake2<Ed25519Group>, [u8; SPAKE_LEN]) {
    let (password, viewer, server) = (
        &Password::new(code.digits()),
        &Identity::new(SPAKE_VIEWER),
        &Identity::new(SPAKE_SERVER),
    );
    let (state, ours) = match role {
        Role::Viewer => Spake2::<Ed25519Group>::start_a(password, viewer, server),
        Role::Server => Spake2::<Ed25519Group>::start_b(password, viewer, server),
    };
    let ours = ours
        .try_into()
        .expect("a SPAKE2 message on Ed25519 is a side byte and a 32-byte point");
    (state, ours)
}

/// The PSK from our SPAKE2 state and the peer's message (in `message`).
pub fn spake_finish(
    state: Spake2<Ed25519Group>,
    theirs: &[u8; SPAKE_LEN],
    message: HandshakeMessage,
) -> Result<[u8; 32]> {
    let spake = |error| SecureError::Spake { message, error };
    let key = state.finish(theirs).map_err(spake)?;
    key.try_into()
        .map_err(|_| spake(spake2::Error::WrongLength))
}

// ---- 6. verdict -----------------------------------------------------------------

/// The server's verdict on a viewer past the Noise handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    Welcome,
    /// Not in the server's paired list; why, as text.
    NotPaired {
        reason: &'a [u8],
    },
}

/// Builds a verdict's plaintext into `out`, leaving room for the record's tag;
/// returns its length. A reason longer than [`MAX_REASON`] is cut.
pub fn build_verdict(out: &mut [u8; MAX_HANDSHAKE_FRAME], verdict: &Verdict) -> usize {
    match verdict {
        Verdict::Welcome => {
            out[0] = VERDICT_WELCOME;
            1
        }
        Verdict::NotPaired { reason } => {
            let reason = cut_reason(reason);
            out[0] = VERDICT_NOT_PAIRED;
            out[1..1 + reason.len()].copy_from_slice(reason);
            1 + reason.len()
        }
    }
}

/// Parses an opened verdict. Anything after a welcome is ignored.
pub fn parse_verdict(plain: &[u8]) -> std::result::Result<Verdict<'_>, MessageError> {
    match plain.split_first() {
        None => Err(MessageError::EmptyVerdict),
        Some((&VERDICT_WELCOME, _)) => Ok(Verdict::Welcome),
        Some((&VERDICT_NOT_PAIRED, reason)) => Ok(Verdict::NotPaired { reason }),
        Some((&other, _)) => Err(MessageError::Verdict(other)),
    }
}

/// `reason` cut to at most [`MAX_REASON`] bytes, at a character boundary when it
/// is UTF-8.
fn cut_reason(reason: &[u8]) -> &[u8] {
    let mut end = reason.len().min(MAX_REASON);
    while end < reason.len() && end > 0 && (reason[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &reason[..end]
}

/// A refusal text from the network, made printable (it may be long: not a name).
pub fn reason_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(MAX_REASON)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// The verdict, sealed, is the largest message a server builds: it must fit a frame.
const _: () = assert!(1 + MAX_REASON + TAG_LEN <= MAX_HANDSHAKE_FRAME);
const _: () = assert!(HELLO_LEN + MAX_REASON <= MAX_HANDSHAKE_FRAME);

#[cfg(test)]
mod tests {
    use super::*;
    use HandshakeMessage as M;

    fn code(s: &str) -> PairingCode {
        PairingCode::parse(s).unwrap()
    }

    fn message_error<T: std::fmt::Debug>(r: std::result::Result<T, MessageError>) -> MessageError {
        r.expect_err("accepted")
    }

    // ---- frames

    #[test]
    fn frames_round_trip_and_a_long_one_is_refused_unread() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"abc", M::Hello).unwrap();
        write_frame(&mut wire, &[], M::Verdict).unwrap();
        assert_eq!(wire, [3, 0, b'a', b'b', b'c', 0, 0]);
        let mut r = &wire[..];
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        assert_eq!(read_frame(&mut r, &mut buf, M::Hello).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(read_frame(&mut r, &mut buf, M::Verdict).unwrap(), 0);

        assert_eq!(
            frame_len([0x00, 0x08], M::Reply).unwrap(),
            MAX_HANDSHAKE_FRAME
        );
        let e = frame_len([0x01, 0x08], M::Reply).unwrap_err();
        assert!(
            matches!(
                e,
                SecureError::Message(MessageError::TooLong {
                    message: M::Reply,
                    len: 2049,
                    max: MAX_HANDSHAKE_FRAME
                })
            ),
            "{e}"
        );
        // The header says 65535: refused before the body is read (there is none).
        let e = read_frame(&mut &[0xff, 0xff][..], &mut buf, M::NoiseE).unwrap_err();
        assert!(
            matches!(e, SecureError::Message(MessageError::TooLong { .. })),
            "{e}"
        );
    }

    #[test]
    fn a_truncated_frame_is_a_closed_connection_at_that_message() {
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        for wire in [&[][..], &[5][..], &[5, 0, 1, 2][..]] {
            let e = read_frame(&mut &wire[..], &mut buf, M::NoiseServer).unwrap_err();
            assert!(
                matches!(e, SecureError::Closed(M::NoiseServer)),
                "{wire:?}: {e}"
            );
        }
    }

    // ---- 1. hello

    #[test]
    fn hello_golden_bytes_and_round_trip() {
        let mut out = [0u8; MAX_HELLO];
        let n = build_hello(
            &mut out,
            &Hello {
                pairing: None,
                aes: true,
            },
        );
        assert_eq!(&out[..n], b"LSEC\x01\x00\x01\x00");
        assert_eq!(
            parse_hello(&out[..n]).unwrap(),
            Hello {
                pairing: None,
                aes: true
            }
        );
        let spake = [0x41; SPAKE_LEN];
        let n = build_hello(
            &mut out,
            &Hello {
                pairing: Some(&spake),
                aes: false,
            },
        );
        assert_eq!(n, 41);
        assert_eq!(&out[..8], b"LSEC\x01\x01\x00\x00");
        assert_eq!(&out[8..n], &spake);
        assert_eq!(
            parse_hello(&out[..n]).unwrap(),
            Hello {
                pairing: Some(&spake),
                aes: false
            }
        );
        // Unknown flags and the reserved byte are ignored.
        assert_eq!(
            parse_hello(b"LSEC\x01\x00\xfe\xff").unwrap(),
            Hello {
                pairing: None,
                aes: false
            }
        );
    }

    #[test]
    fn each_rule_of_the_hello_refuses() {
        let good = b"LSEC\x01\x00\x00\x00";
        for len in 0..HELLO_LEN {
            assert_eq!(
                message_error(parse_hello(&good[..len])),
                MessageError::Truncated {
                    message: M::Hello,
                    len,
                    need: HELLO_LEN
                }
            );
        }
        assert_eq!(
            message_error(parse_hello(b"LSTR\x01\x00\x00\x00")),
            MessageError::BadMagic {
                message: M::Hello,
                found: *b"LSTR"
            }
        );
        assert_eq!(
            message_error(parse_hello(b"LSEC\x02\x00\x00\x00")),
            MessageError::Version {
                message: M::Hello,
                found: 2,
                ours: 1
            }
        );
        let mut paired_with_data = good.to_vec();
        paired_with_data.push(0);
        assert_eq!(
            message_error(parse_hello(&paired_with_data)),
            MessageError::Mode { mode: 0, extra: 1 }
        );
        for extra in [0, 32, 34] {
            let mut pairing = b"LSEC\x01\x01\x00\x00".to_vec();
            pairing.resize(HELLO_LEN + extra, 7);
            assert_eq!(
                message_error(parse_hello(&pairing)),
                MessageError::Mode { mode: 1, extra }
            );
        }
        assert_eq!(
            message_error(parse_hello(b"LSEC\x01\x02\x00\x00")),
            MessageError::Mode { mode: 2, extra: 0 }
        );
    }

    // ---- 2. reply

    #[test]
    fn reply_golden_bytes_and_round_trip() {
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let spake = [0x42; SPAKE_LEN];
        let go = Reply::Go {
            cipher: Cipher::AesGcm,
            pairing: &spake,
        };
        let n = build_reply(&mut out, &go);
        assert_eq!(&out[..8], b"LSEC\x01\x00\x01\x00");
        assert_eq!(n, 41);
        assert_eq!(parse_reply(&out[..n]).unwrap(), go);
        assert_eq!(reply_spake(&spake).unwrap(), &spake);

        let plain = Reply::PlaintextOnly {
            reason: b"no encryption here",
        };
        let n = build_reply(&mut out, &plain);
        assert_eq!(&out[..8], b"LSEC\x01\x01\x00\x00");
        assert_eq!(parse_reply(&out[..n]).unwrap(), plain);
        let refused = Reply::Refused { reason: b"busy" };
        let n = build_reply(&mut out, &refused);
        assert_eq!(&out[..n], b"LSEC\x01\x02\x00\x00busy");
        assert_eq!(parse_reply(&out[..n]).unwrap(), refused);

        // A long reason is cut at a character boundary.
        let long = "é".repeat(MAX_REASON);
        let n = build_reply(
            &mut out,
            &Reply::Refused {
                reason: long.as_bytes(),
            },
        );
        assert_eq!(n, HELLO_LEN + MAX_REASON);
        assert!(std::str::from_utf8(&out[HELLO_LEN..n]).is_ok());
        let odd = format!("x{long}");
        let n = build_reply(
            &mut out,
            &Reply::Refused {
                reason: odd.as_bytes(),
            },
        );
        assert_eq!(
            n,
            HELLO_LEN + MAX_REASON - 1,
            "cut before a split character"
        );
        assert!(std::str::from_utf8(&out[HELLO_LEN..n]).is_ok());
    }

    #[test]
    fn each_rule_of_the_reply_refuses() {
        for len in 0..HELLO_LEN {
            assert_eq!(
                message_error(parse_reply(&b"LSEC\x01\x00\x00\x00"[..len])),
                MessageError::Truncated {
                    message: M::Reply,
                    len,
                    need: HELLO_LEN
                }
            );
        }
        assert!(matches!(
            message_error(parse_reply(b"XSEC\x01\x00\x00\x00")),
            MessageError::BadMagic {
                message: M::Reply,
                ..
            }
        ));
        assert!(matches!(
            message_error(parse_reply(b"LSEC\x00\x00\x00\x00")),
            MessageError::Version {
                message: M::Reply,
                found: 0,
                ..
            }
        ));
        assert_eq!(
            message_error(parse_reply(b"LSEC\x01\x03\x00\x00")),
            MessageError::Status(3)
        );
        assert_eq!(
            message_error(parse_reply(b"LSEC\x01\x00\x02\x00")),
            MessageError::Cipher(2)
        );
        // Any cipher byte with a refusal: it is not read.
        assert!(parse_reply(b"LSEC\x01\x02\x09\x00").is_ok());
        for found in [0, 32, 34] {
            assert_eq!(
                message_error(reply_spake(&vec![0; found])),
                MessageError::PairingData { found }
            );
        }
    }

    // ---- 6. verdict

    #[test]
    fn verdicts_round_trip_and_unknown_ones_are_refused() {
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let n = build_verdict(&mut out, &Verdict::Welcome);
        assert_eq!(&out[..n], &[0]);
        assert_eq!(parse_verdict(&out[..n]).unwrap(), Verdict::Welcome);
        let no = Verdict::NotPaired { reason: b"who?" };
        let n = build_verdict(&mut out, &no);
        assert_eq!(&out[..n], b"\x01who?");
        assert_eq!(parse_verdict(&out[..n]).unwrap(), no);
        let long = vec![b'x'; 5000];
        let n = build_verdict(&mut out, &Verdict::NotPaired { reason: &long });
        assert_eq!(n, 1 + MAX_REASON);
        assert!(n + TAG_LEN <= MAX_HANDSHAKE_FRAME, "no room for the tag");

        assert_eq!(
            message_error(parse_verdict(&[])),
            MessageError::EmptyVerdict
        );
        assert_eq!(message_error(parse_verdict(&[2])), MessageError::Verdict(2));
        assert_eq!(reason_text(b"bad\x1b[31m\nline"), "bad [31m line");
        assert_eq!(reason_text(&[b'y'; 3000]).len(), MAX_REASON);
    }

    // ---- 3 to 5: Noise and SPAKE2, both sides in memory

    /// Both sides of a handshake over these functions, without sockets: the
    /// viewer pairs with `viewer_code` against the server's `server_code`.
    /// Returns the names each side read, or the first error and who got it.
    fn shake(
        viewer_code: Option<&str>,
        server_code: Option<&str>,
        tamper_reply: bool,
    ) -> std::result::Result<(String, String), (Role, SecureError)> {
        let (vk, sk) = (KeyPair::generate(), KeyPair::generate());
        let v_spake = viewer_code.map(|c| spake_start(&code(c), Role::Viewer));
        let mut hello = [0u8; MAX_HELLO];
        let hn = build_hello(
            &mut hello,
            &Hello {
                pairing: v_spake.as_ref().map(|(_, m)| m),
                aes: true,
            },
        );
        let hello = &hello[..hn];
        let parsed = parse_hello(hello).unwrap();
        let (s_psk, s_msg) = match (parsed.pairing, server_code) {
            (Some(theirs), Some(c)) => {
                let (state, ours) = spake_start(&code(c), Role::Server);
                let psk = spake_finish(state, theirs, M::Hello).map_err(|e| (Role::Server, e))?;
                (Some(psk), Some(ours))
            }
            _ => (None, None),
        };
        let mut reply = [0u8; MAX_HANDSHAKE_FRAME];
        let rn = build_reply(
            &mut reply,
            &Reply::Go {
                cipher: Cipher::ChaChaPoly,
                pairing: s_msg.as_ref().map_or(&[][..], |m| &m[..]),
            },
        );
        let seen_reply = reply[..rn].to_vec();
        if tamper_reply {
            reply[6] = 1; // the viewer sees AES-GCM chosen, the server ChaChaPoly
        }
        let Reply::Go { cipher, pairing } = parse_reply(&reply[..rn]).unwrap() else {
            unreachable!("built as go")
        };
        let v_psk = match v_spake {
            Some((state, _)) => Some(
                spake_finish(state, reply_spake(pairing).unwrap(), M::Reply)
                    .map_err(|e| (Role::Viewer, e))?,
            ),
            None => None,
        };
        let v_err = |e| (Role::Viewer, e);
        let s_err = |e| (Role::Server, e);
        let mut v = noise_state(
            &vk,
            cipher,
            v_psk.as_ref(),
            [hello, &reply[..rn]],
            Role::Viewer,
        )
        .map_err(v_err)?;
        let mut s = noise_state(
            &sk,
            Cipher::ChaChaPoly,
            s_psk.as_ref(),
            [hello, &seen_reply],
            Role::Server,
        )
        .map_err(s_err)?;
        let (mut wire, mut plain) = ([0u8; MAX_HANDSHAKE_FRAME], [0u8; MAX_HANDSHAKE_FRAME]);
        assert!(matches!(
            remote_key(&v, Role::Server),
            Err(SecureError::NoStaticKey(Role::Server))
        ));
        let n = noise_write(&mut v, &[], &mut wire, M::NoiseE).map_err(v_err)?;
        noise_read(&mut s, &wire[..n], &mut plain, M::NoiseE).map_err(s_err)?;
        let n =
            noise_write(&mut s, name_payload("cam"), &mut wire, M::NoiseServer).map_err(s_err)?;
        let m = noise_read(&mut v, &wire[..n], &mut plain, M::NoiseServer).map_err(v_err)?;
        let server_name = String::from_utf8_lossy(&plain[..m]).into_owned();
        remote_key(&v, Role::Server).map_err(v_err)?;
        let n =
            noise_write(&mut v, name_payload("tv"), &mut wire, M::NoiseViewer).map_err(v_err)?;
        let m = noise_read(&mut s, &wire[..n], &mut plain, M::NoiseViewer).map_err(s_err)?;
        let viewer_name = String::from_utf8_lossy(&plain[..m]).into_owned();
        assert_eq!(remote_key(&s, Role::Viewer).unwrap(), vk.public);
        Ok((server_name, viewer_name))
    }

    #[test]
    fn a_whole_handshake_runs_over_the_message_functions() {
        let names = ("cam".to_string(), "tv".to_string());
        assert_eq!(shake(None, None, false).unwrap(), names);
        assert_eq!(
            shake(Some("1234-5678"), Some("12345678"), false).unwrap(),
            names
        );
    }

    #[test]
    fn a_wrong_code_fails_when_the_server_reads_frame_5() {
        let (who, e) = shake(Some("1234-5678"), Some("8765-4321"), false).unwrap_err();
        assert_eq!(who, Role::Server);
        assert!(
            matches!(
                e,
                SecureError::Noise {
                    message: M::NoiseViewer,
                    source: snow::Error::Decrypt
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_changed_reply_fails_the_handshake_through_the_prologue() {
        let (who, e) = shake(None, None, true).unwrap_err();
        assert_eq!(who, Role::Viewer, "{e}");
        assert!(
            matches!(
                e,
                SecureError::Noise {
                    message: M::NoiseServer,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_spake_message_from_the_wrong_side_is_refused() {
        let (state, ours) = spake_start(&code("1111-2222"), Role::Server);
        // The server's own message handed back to it: the side byte is wrong.
        let e = spake_finish(state, &ours, M::Hello).unwrap_err();
        assert!(
            matches!(
                e,
                SecureError::Spake {
                    message: M::Hello,
                    error: spake2::Error::BadSide
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("frame 1"), "{e}");
    }

    /// The Noise messages' sizes as `docs/protocol.md` gives them: frame 3 is
    /// 32 bytes (48 when pairing: the PSK mode keys it), frame 4 is 96 + the
    /// server's name, frame 5 is 64 + the viewer's name.
    #[test]
    fn noise_message_sizes_are_the_documented_ones() {
        for psk in [None, Some([9u8; 32])] {
            let (vk, sk) = (KeyPair::generate(), KeyPair::generate());
            let cipher = Cipher::AesGcm;
            let prologue: [&[u8]; 2] = [b"h", b"r"];
            let mut v = noise_state(&vk, cipher, psk.as_ref(), prologue, Role::Viewer).unwrap();
            let mut s = noise_state(&sk, cipher, psk.as_ref(), prologue, Role::Server).unwrap();
            let (mut wire, mut plain) = ([0u8; MAX_HANDSHAKE_FRAME], [0u8; MAX_HANDSHAKE_FRAME]);
            let n = noise_write(&mut v, &[], &mut wire, M::NoiseE).unwrap();
            assert_eq!(
                n,
                if psk.is_some() { 48 } else { 32 },
                "frame 3, psk {psk:?}"
            );
            noise_read(&mut s, &wire[..n], &mut plain, M::NoiseE).unwrap();
            let n = noise_write(&mut s, b"kitchen", &mut wire, M::NoiseServer).unwrap();
            assert_eq!(n, 96 + 7, "frame 4");
            noise_read(&mut v, &wire[..n], &mut plain, M::NoiseServer).unwrap();
            let n = noise_write(&mut v, b"tv", &mut wire, M::NoiseViewer).unwrap();
            assert_eq!(n, 64 + 2, "frame 5");
            noise_read(&mut s, &wire[..n], &mut plain, M::NoiseViewer).unwrap();
        }
    }

    #[test]
    fn names_are_cut_to_the_limit() {
        assert_eq!(name_payload("cam"), b"cam");
        assert_eq!(name_payload(&"n".repeat(200)).len(), MAX_NAME);
    }
}
