//! The cryptographic suite: which AEAD ([`Cipher`]), the Noise protocol names
//! built on it ([`params`]), whether this CPU does AES in hardware, the transport
//! keys a finished handshake yields ([`Keys`]) and one direction's cipher with the
//! nonce given by the caller ([`Aead`]). Nothing cryptographic is written here:
//! snow runs the handshakes, ring seals and opens.
//!
//! Pure functions and values, no threads: the server's connection threads, the
//! viewer's calling thread and `bench --seal` use them.

use std::io;

/// The largest Noise message, and so the largest record.
pub const MAX_RECORD: usize = 65535;
/// The AEAD tag at the end of every record (both ciphers).
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries.
pub const MAX_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;

/// The message for a record that does not open.
pub const AUTH_FAILED: &str =
    "a record failed authentication: the data was altered or replayed in transit, or does not come from the paired peer";

/// The AEAD both sides use after the handshake. The discriminant is its byte on
/// the wire (the server's reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    ChaChaPoly = 0,
    AesGcm = 1,
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cipher::ChaChaPoly => "ChaCha20-Poly1305",
            Cipher::AesGcm => "AES-256-GCM",
        })
    }
}

impl Cipher {
    /// Its name in a Noise protocol name.
    fn noise_name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AESGCM",
        }
    }

    /// The cipher for its wire byte, if it is one.
    pub fn from_u8(b: u8) -> Option<Cipher> {
        [Cipher::ChaChaPoly, Cipher::AesGcm]
            .into_iter()
            .find(|c| *c as u8 == b)
    }

    /// The server's choice: AES-GCM only when both ends have it in hardware.
    pub fn choose(viewer_has_aes: bool, server_has_aes: bool) -> Cipher {
        if viewer_has_aes && server_has_aes {
            Cipher::AesGcm
        } else {
            Cipher::ChaChaPoly
        }
    }
}

/// The Noise protocol for a cipher, with or without the pairing PSK.
pub fn params(cipher: Cipher, psk: bool) -> snow::params::NoiseParams {
    let pattern = if psk { "XXpsk3" } else { "XX" };
    format!("Noise_{pattern}_25519_{}_SHA256", cipher.noise_name())
        .parse()
        .expect("a Noise protocol name snow knows")
}

/// AES-GCM is the faster cipher only with AES and carry-less multiply in hardware
/// (8.7 GB/s against ChaCha20-Poly1305's 2.7 here); without them ChaCha20 wins by
/// far (a Raspberry Pi 4 has no AES instructions).
pub fn has_aes_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A side of a secure connection. The viewer starts the handshake (Noise's
/// initiator), the server answers (the responder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Server,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Server => "server",
        })
    }
}

/// Keys were asked of a handshake that has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Noise handshake is not finished: it has no transport keys yet")]
pub struct Unfinished;

/// The two transport keys of a finished handshake, one per direction, as Noise's
/// `Split()` gives them: the same pair on both sides. Which one a side seals with
/// is [`crate::secure::Link`]'s business (the viewer is always the initiator).
pub struct Keys {
    pub(crate) initiator_to_responder: [u8; 32],
    pub(crate) responder_to_initiator: [u8; 32],
    pub(crate) cipher: Cipher,
}

impl Keys {
    /// Takes the keys from a finished handshake. The records are sealed by ring
    /// directly rather than by snow's transport: snow opens only into a second
    /// buffer, and the viewer opens a record in place where it was read (one copy
    /// of each frame less). They are Noise transport messages all the same (a unit
    /// test opens ours with snow's transport and the other way round).
    pub fn split(noise: &mut snow::HandshakeState, cipher: Cipher) -> Result<Keys, Unfinished> {
        if !noise.is_handshake_finished() {
            return Err(Unfinished);
        }
        let (initiator_to_responder, responder_to_initiator) = noise.dangerously_get_raw_split();
        Ok(Keys {
            initiator_to_responder,
            responder_to_initiator,
            cipher,
        })
    }
}

/// Two finished Noise XX handshake states (initiator, responder), made in
/// memory with new keys: for benchmarks and tests of the records.
pub fn handshake_in_memory(
    cipher: Cipher,
) -> Result<(snow::HandshakeState, snow::HandshakeState), snow::Error> {
    let builder = || snow::Builder::new(params(cipher, false));
    let (a, b) = (builder().generate_keypair()?, builder().generate_keypair()?);
    let mut i = builder().local_private_key(&a.private)?.build_initiator()?;
    let mut r = builder().local_private_key(&b.private)?.build_responder()?;
    let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut m)?;
    r.read_message(&m[..n], &mut p)?;
    let n = r.write_message(&[], &mut m)?;
    i.read_message(&m[..n], &mut p)?;
    let n = i.write_message(&[], &mut m)?;
    r.read_message(&m[..n], &mut p)?;
    Ok((i, r))
}

/// One direction's cipher, as a Noise CipherState with the counter kept by the
/// caller: nonce = 4 zero bytes and the counter (big-endian for AESGCM,
/// little-endian for ChaChaPoly), no associated data, the tag after the text.
pub(crate) struct Aead {
    /// Boxed: ring's key schedule is large, and the record halves hold it by value.
    key: Box<ring::aead::LessSafeKey>,
    cipher: Cipher,
}

impl Aead {
    pub(crate) fn new(cipher: Cipher, key: &[u8; 32]) -> Aead {
        let algorithm = match cipher {
            Cipher::AesGcm => &ring::aead::AES_256_GCM,
            Cipher::ChaChaPoly => &ring::aead::CHACHA20_POLY1305,
        };
        Aead {
            key: Box::new(ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(algorithm, key).expect("a 32-byte key"),
            )),
            cipher,
        }
    }

    fn nonce(&self, n: u64) -> ring::aead::Nonce {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&match self.cipher {
            Cipher::AesGcm => n.to_be_bytes(),
            Cipher::ChaChaPoly => n.to_le_bytes(),
        });
        ring::aead::Nonce::assume_unique_for_key(b)
    }

    /// Seals `buf[..len]` in place and puts the tag after it; returns the
    /// record's length. `buf` must have room for the tag.
    pub(crate) fn seal(&self, nonce: u64, buf: &mut [u8], len: usize) -> io::Result<usize> {
        if buf.len() < len + TAG_LEN || len > MAX_PLAINTEXT {
            return Err(io::Error::other("no room for a record"));
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(nonce),
                ring::aead::Aad::empty(),
                &mut buf[..len],
            )
            .map_err(|_| io::Error::other("sealing failed"))?;
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    /// Opens a record in place; returns the plaintext's length (at the start of
    /// `record`). A record that does not open is `InvalidData`, [`AUTH_FAILED`].
    pub(crate) fn open(&self, nonce: u64, record: &mut [u8]) -> io::Result<usize> {
        self.key
            .open_in_place(self.nonce(nonce), ring::aead::Aad::empty(), record)
            .map(|plain| plain.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, AUTH_FAILED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_bytes_names_and_choice() {
        assert_eq!(Cipher::from_u8(0), Some(Cipher::ChaChaPoly));
        assert_eq!(Cipher::from_u8(1), Some(Cipher::AesGcm));
        assert_eq!(Cipher::from_u8(2), None);
        assert_eq!(Cipher::choose(true, true), Cipher::AesGcm);
        assert_eq!(Cipher::choose(true, false), Cipher::ChaChaPoly);
        assert_eq!(Cipher::choose(false, true), Cipher::ChaChaPoly);
        assert_eq!(
            params(Cipher::AesGcm, true).name,
            "Noise_XXpsk3_25519_AESGCM_SHA256"
        );
        assert_eq!(
            params(Cipher::ChaChaPoly, false).name,
            "Noise_XX_25519_ChaChaPoly_SHA256"
        );
    }

    #[test]
    fn keys_only_from_a_finished_handshake() {
        let b = snow::Builder::new(params(Cipher::ChaChaPoly, false));
        let k = b.generate_keypair().unwrap();
        let mut i = snow::Builder::new(params(Cipher::ChaChaPoly, false))
            .local_private_key(&k.private)
            .unwrap()
            .build_initiator()
            .unwrap();
        assert!(matches!(
            Keys::split(&mut i, Cipher::ChaChaPoly),
            Err(Unfinished)
        ));
        let (mut i, mut r) = handshake_in_memory(Cipher::AesGcm).unwrap();
        let (a, b) = (
            Keys::split(&mut i, Cipher::AesGcm).unwrap(),
            Keys::split(&mut r, Cipher::AesGcm).unwrap(),
        );
        assert_eq!(a.initiator_to_responder, b.initiator_to_responder);
        assert_eq!(a.responder_to_initiator, b.responder_to_initiator);
        assert_ne!(a.initiator_to_responder, a.responder_to_initiator);
    }

    #[test]
    fn seal_needs_room_for_the_tag() {
        let aead = Aead::new(Cipher::ChaChaPoly, &[7; 32]);
        let mut buf = [0u8; 20];
        assert!(
            aead.seal(0, &mut buf, 5).is_err(),
            "4 bytes left for a 16-byte tag"
        );
        assert_eq!(aead.seal(0, &mut buf, 4).unwrap(), 20);
        let mut big = vec![0u8; MAX_RECORD + 1];
        assert!(
            aead.seal(0, &mut big, MAX_PLAINTEXT + 1).is_err(),
            "over a record"
        );
    }
}
