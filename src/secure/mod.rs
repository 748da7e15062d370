//! The encrypted native connection: pairing, a Noise handshake, then records.
//! Specified byte by byte in `docs/protocol.md` ("Encryption and pairing").
//!
//! A viewer and a server first agree on a cipher in two plaintext messages
//! (with SPAKE2 on the pairing code when the viewer is pairing), then run Noise
//! XX (XXpsk3 when pairing, the SPAKE2 key as the PSK) with both messages in the
//! prologue; the server ends the handshake with a verdict. From then on the
//! plaintext protocol (`crate::net::protocol`) rides in records: Noise transport
//! messages whose nonces count from 0 in each direction, so a dropped,
//! reordered, replayed or altered record fails authentication and ends the
//! connection.
//!
//! A short code is a weak key, so it never is one: SPAKE2 turns it into a strong
//! one that an eavesdropper cannot test guesses against, and an active attacker
//! gets one guess per connection (and the server a new code after
//! [`MAX_WRONG_CODES`] wrong ones).
//!
//! Reading order:
//! - `suite.rs`: the ciphers, the Noise protocol names, the AES probe, the keys a
//!   handshake yields and one direction's AEAD;
//! - `handshake.rs`: every handshake message as functions over byte slices;
//! - `server_auth.rs` ([`ServerAuth::accept`]) and `viewer_auth.rs`
//!   ([`ViewerAuth::connect`]): the two sides, which do the socket I/O;
//! - `record.rs`: [`Link`] (the one owner of the nonces), [`SealWriter`],
//!   [`OpenReader`], and [`Tx`]/[`Rx`] for sealed or plaintext connections;
//! - `error.rs`: [`SecureError`]; `trust.rs`: key files, pins, pairing codes.
//!
//! Threads: see each file; nothing here starts a thread.

mod error;
pub mod handshake;
mod record;
mod server_auth;
mod suite;
pub mod trust;
mod viewer_auth;

pub use error::{HandshakeMessage, MessageError, Result, SecureError};
pub use handshake::{MAGIC, VERSION};
pub use record::{Link, OpenReader, Opener, Rx, SealWriter, Sealer, Tx};
pub use server_auth::{Accepted, ServerAuth};
pub use suite::{
    handshake_in_memory, has_aes_hardware, params, Cipher, Keys, Role, Unfinished, AUTH_FAILED,
    MAX_PLAINTEXT, MAX_RECORD, TAG_LEN,
};
pub use trust::MAX_WRONG_CODES;
pub use viewer_auth::{Connected, ViewerAuth};

#[cfg(test)]
mod tests;
