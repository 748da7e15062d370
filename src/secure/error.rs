//! Why a secure connection was not made: [`SecureError`] (what a caller sees,
//! with [`SecureError::is_final`] for "retrying cannot help"), and
//! [`MessageError`], what is wrong in one handshake message's bytes. Every
//! variant says which message ([`HandshakeMessage`]) and keeps its cause.
//!
//! Values only, no threads: built on the server's connection threads and the
//! viewer's calling thread.

use std::io;

use super::suite::{Role, Unfinished};
use super::trust::{TrustError, MAX_WRONG_CODES};

/// The secure layer's own result.
pub type Result<T> = std::result::Result<T, SecureError>;

/// A message of the secure handshake, numbered as the frames go on the wire
/// (`docs/protocol.md`, "Encryption and pairing").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeMessage {
    /// 1, viewer → server.
    Hello,
    /// 2, server → viewer.
    Reply,
    /// 3, viewer → server: Noise `→ e`.
    NoiseE,
    /// 4, server → viewer: Noise `← e, ee, s, es` and the server's name.
    NoiseServer,
    /// 5, viewer → server: Noise `→ s, se` and the viewer's name.
    NoiseViewer,
    /// 6, server → viewer: a record, welcome or not paired; or an empty frame.
    Verdict,
    /// After an empty verdict frame: why the server gave up, in plaintext.
    Reason,
}

impl std::fmt::Display for HandshakeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeMessage::Hello => "the viewer's hello (frame 1)",
            HandshakeMessage::Reply => "the server's reply (frame 2)",
            HandshakeMessage::NoiseE => "Noise message → e (frame 3)",
            HandshakeMessage::NoiseServer => "Noise message ← e, ee, s, es (frame 4)",
            HandshakeMessage::NoiseViewer => "Noise message → s, se (frame 5)",
            HandshakeMessage::Verdict => "the verdict (frame 6)",
            HandshakeMessage::Reason => "the server's reason after an empty verdict",
        })
    }
}

/// What is wrong in the bytes of one handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{message} is {len} bytes, over the limit of {max}")]
    TooLong {
        message: HandshakeMessage,
        len: usize,
        max: usize,
    },
    #[error("{message} is {len} bytes, shorter than its {need}-byte header")]
    Truncated {
        message: HandshakeMessage,
        len: usize,
        need: usize,
    },
    #[error("{message} starts with {found:02x?}, not `LSEC`: not a livestream secure message")]
    BadMagic {
        message: HandshakeMessage,
        found: [u8; 4],
    },
    #[error("{message} is secure version {found}; this side speaks {ours}")]
    Version {
        message: HandshakeMessage,
        found: u8,
        ours: u8,
    },
    #[error(
        "{}: mode {mode} with {extra} bytes of pairing data (expected mode 0 with none, \
         or mode 1 with 33)",
        HandshakeMessage::Hello
    )]
    Mode { mode: u8, extra: usize },
    #[error("{m}: unknown status {0}", m = HandshakeMessage::Reply)]
    Status(u8),
    #[error("{m}: unknown cipher {0}", m = HandshakeMessage::Reply)]
    Cipher(u8),
    #[error(
        "{}: {found} bytes of pairing data where a pairing viewer expects 33",
        HandshakeMessage::Reply
    )]
    PairingData { found: usize },
    #[error("{} opened to nothing", HandshakeMessage::Verdict)]
    EmptyVerdict,
    #[error("{m}: unknown verdict {0}", m = HandshakeMessage::Verdict)]
    Verdict(u8),
}

/// Why a secure connection was not made. Some are final: retrying cannot help
/// ([`SecureError::is_final`]).
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error(
        "the server at {address} runs without encryption (auth = \"none\" in its [serve] table): \
         {message}. To watch it anyway, set auth = \"none\" under [view] \
         (--set 'view.auth=\"none\"'), knowing anyone on the network can watch too"
    )]
    PlaintextServer { address: String, message: String },
    #[error("pairing with {address} failed: {message}. Check the code that `livestream serve` printed (it changes after {MAX_WRONG_CODES} wrong tries)")]
    WrongCode { address: String, message: String },
    #[error(
        "{name} at {address} is not paired with this viewer (its key is {fingerprint}): \
         run `livestream view {address} --pair CODE` once, with the pairing code that \
         `livestream serve` printed"
    )]
    NotPaired {
        address: String,
        name: String,
        fingerprint: String,
    },
    #[error(
        "REFUSED: {name} at {address} presents key {new}, but this viewer paired with key {old} \
         for it. It may be an impostor; or its key was reset, and then pair again with \
         --pair CODE (the new key replaces the old)"
    )]
    KeyChanged {
        address: String,
        name: String,
        old: String,
        new: String,
    },
    #[error("the server refused this viewer: {0}")]
    ViewerNotPaired(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the secure handshake failed: {0}")]
    Message(#[from] MessageError),
    #[error("the secure handshake failed setting up Noise: {0}")]
    NoiseSetup(#[source] snow::Error),
    #[error("the secure handshake failed at {message}: {source}")]
    Noise {
        message: HandshakeMessage,
        #[source]
        source: snow::Error,
    },
    // spake2 is built without its `std` feature, so its error is no
    // `std::error::Error` to chain: it is kept as a value and shown.
    #[error("the secure handshake failed: the pairing (SPAKE2) message in {message} does not check out: {error}")]
    Spake {
        message: HandshakeMessage,
        error: spake2::Error,
    },
    #[error("the secure handshake failed: the {0} sent no static key")]
    NoStaticKey(Role),
    #[error("the secure handshake failed: {0}")]
    Unfinished(#[from] Unfinished),
    #[error("the secure handshake failed: {m} did not open: {0}", m = HandshakeMessage::Verdict)]
    VerdictOpen(#[source] io::Error),
    #[error("the secure handshake timed out waiting for {0}")]
    Timeout(HandshakeMessage),
    #[error("the connection closed in the secure handshake, at {0}")]
    Closed(HandshakeMessage),
    #[error("the secure handshake failed at {message}: {source}")]
    Io {
        message: HandshakeMessage,
        #[source]
        source: io::Error,
    },
    #[error("keys: {0}")]
    Trust(#[from] TrustError),
}

impl SecureError {
    /// True when connecting again cannot help (a person must act): pairing,
    /// keys, or a server without encryption. A broken or refused handshake, a
    /// timeout or a closed connection may go better next time.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            SecureError::PlaintextServer { .. }
                | SecureError::WrongCode { .. }
                | SecureError::NotPaired { .. }
                | SecureError::KeyChanged { .. }
                | SecureError::ViewerNotPaired(_)
                | SecureError::Trust(_)
        )
    }

    /// An I/O error while sending or receiving `message`: a timeout and a
    /// connection closed partway are told apart from other failures.
    pub fn io(message: HandshakeMessage) -> impl FnOnce(io::Error) -> SecureError {
        move |source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SecureError::Timeout(message),
            io::ErrorKind::UnexpectedEof => SecureError::Closed(message),
            _ => SecureError::Io { message, source },
        }
    }

    /// A Noise failure at `message`.
    pub fn noise(message: HandshakeMessage) -> impl FnOnce(snow::Error) -> SecureError {
        move |source| SecureError::Noise { message, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_needs_a_person_is_final() {
        let m = HandshakeMessage::Reply;
        for (e, final_) in [
            (SecureError::ViewerNotPaired("x".into()), true),
            (
                SecureError::WrongCode {
                    address: "a".into(),
                    message: "m".into(),
                },
                true,
            ),
            (SecureError::Refused("busy".into()), false),
            (SecureError::Timeout(m), false),
            (SecureError::Closed(m), false),
            (MessageError::Status(9).into(), false),
            (SecureError::noise(m)(snow::Error::Decrypt), false),
        ] {
            assert_eq!(e.is_final(), final_, "{e}");
        }
    }

    #[test]
    fn io_errors_say_which_message_and_keep_their_cause() {
        let m = HandshakeMessage::NoiseServer;
        let e = SecureError::io(m)(io::ErrorKind::TimedOut.into());
        assert!(matches!(
            e,
            SecureError::Timeout(HandshakeMessage::NoiseServer)
        ));
        assert!(e.to_string().contains("frame 4"), "{e}");
        let e = SecureError::io(m)(io::ErrorKind::UnexpectedEof.into());
        assert!(matches!(e, SecureError::Closed(_)), "{e}");
        let e = SecureError::io(m)(io::Error::other("wire cut"));
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "wire cut");
    }
}
