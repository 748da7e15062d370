//! The viewer's side of the secure handshake: [`ViewerAuth`] holds the viewer's
//! key, the servers it trusts (`known-servers`) and, when pairing, the code;
//! [`ViewerAuth::connect`] drives one handshake over a socket (writes and reads
//! frames, calls the message functions of `handshake.rs`), ending in a [`Link`]
//! whose records carry the plaintext protocol.
//!
//! Threads: the viewer's calling thread only (its reconnect loop), which owns
//! the `ViewerAuth`.

use std::net::TcpStream;
use std::time::Instant;

use spake2::{Ed25519Group, Spake2};

use super::error::{HandshakeMessage as M, Result, SecureError};
use super::handshake::{
    build_hello, name_payload, noise_read, noise_state, noise_write, parse_reply, parse_verdict,
    read_frame, reason_text, remote_key, reply_spake, spake_finish, spake_start, write_frame,
    Hello, Reply, Verdict, MAX_HANDSHAKE_FRAME, MAX_HELLO,
};
use super::record::Link;
use super::suite::{has_aes_hardware, Cipher, Keys, Role};
use super::trust::{clean_name, fingerprint, KeyPair, PairingCode, Peer, PeerList, PublicKey};
use crate::net::io::DeadlineReader;

/// The viewer's side: its key, the servers it trusts and, when pairing, the code.
pub struct ViewerAuth {
    keys: KeyPair,
    known: PeerList,
    code: Option<PairingCode>,
    name: String,
}

/// A server past the handshake, not yet pinned: see [`ViewerAuth::confirm`].
pub struct Connected {
    /// The records, the verdict already opened with `link.rx`.
    pub link: Link,
    pub server_key: PublicKey,
    pub server_name: String,
}

impl ViewerAuth {
    pub fn open(dir: &std::path::Path, code: Option<PairingCode>) -> Result<ViewerAuth> {
        let keys = KeyPair::load_role(dir, Role::Viewer)?;
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| clean_name(h.trim().as_bytes()))
            .unwrap_or_else(|_| "viewer".into());
        Ok(ViewerAuth {
            keys,
            known: PeerList::load(&dir.join("known-servers"))?,
            code,
            name,
        })
    }

    /// The viewer's side of the handshake, on a fresh connection.
    pub fn connect(
        &self,
        stream: &TcpStream,
        address: &str,
        deadline: Instant,
    ) -> Result<Connected> {
        let mut r = DeadlineReader { stream, deadline };
        let mut w = stream;
        let spake = self
            .code
            .as_ref()
            .map(|code| spake_start(code, Role::Viewer));
        // Frames 1 and 2 are kept whole: both go into the Noise prologue.
        let mut hello = [0u8; MAX_HELLO];
        let n = build_hello(
            &mut hello,
            &Hello {
                pairing: spake.as_ref().map(|(_, ours)| ours),
                aes: has_aes_hardware(),
            },
        );
        let hello = &hello[..n];
        write_frame(&mut w, hello, M::Hello)?;
        let mut reply = [0u8; MAX_HANDSHAKE_FRAME];
        let n = read_frame(&mut r, &mut reply, M::Reply)?;
        let reply = &reply[..n];
        let (cipher, psk) = read_reply(reply, spake.map(|(state, _)| state), address)?;
        let noise = noise_state(
            &self.keys,
            cipher,
            psk.as_ref(),
            [hello, reply],
            Role::Viewer,
        )?;
        let (mut noise, server_name, server_key) =
            self.noise_messages(noise, &mut r, &mut w, address)?;
        let mut link = Link::viewer(Keys::split(&mut noise, cipher)?);
        read_verdict(&mut r, &mut link, self.code.is_some(), address)?;
        Ok(Connected {
            link,
            server_key,
            server_name,
        })
    }

    /// Noise messages 3 to 5; a viewer that paired before checks the server's
    /// key against its pins before it sends its own.
    fn noise_messages(
        &self,
        mut noise: snow::HandshakeState,
        r: &mut DeadlineReader,
        w: &mut &TcpStream,
        address: &str,
    ) -> Result<(snow::HandshakeState, String, PublicKey)> {
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let n = noise_write(&mut noise, &[], &mut out, M::NoiseE)?;
        write_frame(w, &out[..n], M::NoiseE)?;
        let n = read_frame(r, &mut buf, M::NoiseServer)?;
        let n = noise_read(&mut noise, &buf[..n], &mut out, M::NoiseServer)?;
        let server_name = clean_name(&out[..n]);
        let server_key = remote_key(&noise, Role::Server)?;
        if self.code.is_none() {
            self.check_pin(address, &server_name, &server_key)?;
        }
        let n = noise_write(
            &mut noise,
            name_payload(&self.name),
            &mut out,
            M::NoiseViewer,
        )?;
        write_frame(w, &out[..n], M::NoiseViewer)?;
        Ok((noise, server_name, server_key))
    }

    fn check_pin(&self, address: &str, name: &str, key: &PublicKey) -> Result<()> {
        if self.known.find_key(key).is_some() {
            return Ok(());
        }
        // Another key for a name or an address paired before: changed, not new.
        let same_place = self
            .known
            .peers
            .iter()
            .find(|p| p.name == name || p.address == address);
        Err(match same_place {
            Some(old) => SecureError::KeyChanged {
                address: address.into(),
                name: name.into(),
                old: fingerprint(&old.key),
                new: fingerprint(key),
            },
            None => SecureError::NotPaired {
                address: address.into(),
                name: name.into(),
                fingerprint: fingerprint(key),
            },
        })
    }

    /// Pins the server once it proved itself (its first record opened): after a
    /// pairing, or when it moved to a new address.
    pub fn confirm(&mut self, connected: &Connected, address: &str) {
        let known = self.known.find_key(&connected.server_key);
        if self.code.is_none() && known.is_some_and(|p| p.address == address) {
            return;
        }
        let peer = Peer {
            key: connected.server_key,
            address: address.into(),
            name: connected.server_name.clone(),
        };
        match self.known.add(peer, self.code.is_some()) {
            Ok(()) if self.code.is_some() => log::info!(
                "paired with \"{}\" at {address} (key {}); later connections need no code",
                connected.server_name,
                fingerprint(&connected.server_key)
            ),
            Ok(()) => {}
            Err(e) => log::warn!("could not remember the server: {e}"),
        }
        // The code did its job; reconnections use the pin.
        self.code = None;
    }
}

/// Reads the server's reply: the cipher and, when pairing, the PSK; or why the
/// server will not go on.
fn read_reply(
    reply: &[u8],
    spake: Option<Spake2<Ed25519Group>>,
    address: &str,
) -> Result<(Cipher, Option<[u8; 32]>)> {
    match parse_reply(reply)? {
        Reply::Go { cipher, pairing } => {
            let psk = match spake {
                Some(state) => Some(spake_finish(state, reply_spake(pairing)?, M::Reply)?),
                None => None,
            };
            Ok((cipher, psk))
        }
        Reply::PlaintextOnly { reason } => Err(SecureError::PlaintextServer {
            address: address.into(),
            message: clean_name(reason),
        }),
        Reply::Refused { reason } => Err(SecureError::Refused(clean_name(reason))),
    }
}

/// Reads the verdict: a record opened with `link.rx` (its first), or an empty
/// frame and the server's reason in plaintext when the handshake failed there.
fn read_verdict(
    r: &mut DeadlineReader,
    link: &mut Link,
    pairing: bool,
    address: &str,
) -> Result<()> {
    let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
    let n = read_frame(r, &mut buf, M::Verdict)?;
    if n == 0 {
        let n = read_frame(r, &mut buf, M::Reason)?;
        let why = clean_name(&buf[..n]);
        return Err(if pairing {
            SecureError::WrongCode {
                address: address.into(),
                message: why,
            }
        } else {
            SecureError::Refused(why)
        });
    }
    let n = link
        .rx
        .open(&mut buf[..n])
        .map_err(SecureError::VerdictOpen)?;
    match parse_verdict(&buf[..n])? {
        Verdict::Welcome => Ok(()),
        Verdict::NotPaired { reason } => Err(SecureError::ViewerNotPaired(reason_text(reason))),
    }
}
