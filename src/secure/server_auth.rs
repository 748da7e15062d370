//! The server's side of the secure handshake: [`ServerAuth`] holds the server's
//! key, its pairing code and the viewers paired with it, and
//! [`ServerAuth::accept`] drives one handshake over a socket (reads and writes
//! frames, calls the message functions of `handshake.rs`), ending in a
//! [`Link`] whose records carry the plaintext protocol.
//!
//! Threads: one `ServerAuth` is shared (`Arc`) by every connection thread, each
//! running `accept` for its own viewer; the HTTP threads ask it for the token,
//! the command line for the code. The pairing code and the paired list are
//! behind their own locks, never held across I/O.

use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Instant;

use super::error::{HandshakeMessage as M, Result, SecureError};
use super::handshake::{
    build_reply, build_verdict, name_payload, noise_read, noise_state, noise_write, parse_hello,
    read_frame, remote_key, spake_finish, spake_start, write_frame, Hello, Reply, Verdict,
    MAX_HANDSHAKE_FRAME,
};
use super::record::Link;
use super::suite::{has_aes_hardware, Cipher, Keys, Role};
use super::trust::{
    clean_name, fingerprint, KeyPair, PairingCode, Peer, PeerList, PublicKey, SharedPeerList,
    MAX_WRONG_CODES,
};
use crate::net::io::DeadlineReader;

/// The server's side: its key, its pairing code and the viewers paired with it.
pub struct ServerAuth {
    keys: KeyPair,
    name: String,
    pairing: Mutex<Pairing>,
    paired: SharedPeerList,
}

struct Pairing {
    code: PairingCode,
    wrong: u32,
}

/// A viewer past the handshake.
pub struct Accepted {
    /// The records, the verdict already sealed with `link.tx`.
    pub link: Link,
    pub cipher: Cipher,
    pub viewer_key: PublicKey,
    pub viewer_name: String,
}

/// A viewer past the Noise messages, before the verdict.
struct Shaken {
    noise: snow::HandshakeState,
    viewer_key: PublicKey,
    viewer_name: String,
}

impl ServerAuth {
    /// Loads (or creates) the server's key and paired list from `dir`.
    pub fn open(dir: &std::path::Path, name: &str) -> Result<ServerAuth> {
        let keys = KeyPair::load_role(dir, Role::Server)?;
        let paired = PeerList::load(&dir.join("paired-viewers"))?;
        Ok(ServerAuth {
            keys,
            name: name.into(),
            pairing: Mutex::new(Pairing {
                code: PairingCode::generate(),
                wrong: 0,
            }),
            paired: SharedPeerList::new(paired),
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.keys.public
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.keys.public)
    }

    /// The code a new viewer pairs with now.
    pub fn code(&self) -> PairingCode {
        self.pairing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .code
            .clone()
    }

    pub fn paired_count(&self) -> usize {
        self.paired.len()
    }

    /// The token for HTTP viewing: an HMAC of a fixed label under the server's
    /// private key, so it is stable across restarts and changes with the key.
    pub fn http_token(&self) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.keys.private);
        let tag = ring::hmac::sign(&key, b"livestream http token v1");
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn wrong_code(&self, peer: SocketAddr) {
        let mut p = self.pairing.lock().unwrap_or_else(|e| e.into_inner());
        p.wrong += 1;
        log::warn!(
            "viewer {peer}: wrong pairing code ({} of {MAX_WRONG_CODES})",
            p.wrong
        );
        if p.wrong >= MAX_WRONG_CODES {
            p.code = PairingCode::generate();
            p.wrong = 0;
            log::warn!(
                "pairing code: {} ({MAX_WRONG_CODES} wrong codes were tried: the previous code no longer works)",
                p.code
            );
        }
    }

    /// Runs the server's side of the handshake on a connection whose first bytes
    /// are [`super::MAGIC`] (framed). `Ok(None)`: refused, and the viewer was told
    /// why.
    pub fn accept(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<Option<Accepted>> {
        let mut r = DeadlineReader { stream, deadline };
        let mut w = stream;
        // Frames 1 and 2 are kept whole: both go into the Noise prologue.
        let mut hello = [0u8; MAX_HANDSHAKE_FRAME];
        let n = read_frame(&mut r, &mut hello, M::Hello)?;
        let hello = &hello[..n];
        let parsed = parse_hello(hello)?;
        let pairing = parsed.pairing.is_some();
        let cipher = Cipher::choose(parsed.aes, has_aes_hardware());
        let mut reply = [0u8; MAX_HANDSHAKE_FRAME];
        let (n, psk) = self.reply(&parsed, cipher, &mut reply)?;
        let reply = &reply[..n];
        write_frame(&mut w, reply, M::Reply)?;
        let noise = noise_state(
            &self.keys,
            cipher,
            psk.as_ref(),
            [hello, reply],
            Role::Server,
        )?;
        let Some(shaken) = self.noise_messages(noise, &mut r, &mut w, pairing, peer)? else {
            return Ok(None);
        };
        self.verdict(shaken, cipher, &mut w, pairing, peer)
    }

    /// Builds the reply to `hello` into `out` (with the server's SPAKE2 message
    /// when the viewer pairs); returns its length and the pairing PSK.
    fn reply(
        &self,
        hello: &Hello,
        cipher: Cipher,
        out: &mut [u8; MAX_HANDSHAKE_FRAME],
    ) -> Result<(usize, Option<[u8; 32]>)> {
        let Some(theirs) = hello.pairing else {
            let go = Reply::Go {
                cipher,
                pairing: &[],
            };
            return Ok((build_reply(out, &go), None));
        };
        let (state, ours) = spake_start(&self.code(), Role::Server);
        let go = Reply::Go {
            cipher,
            pairing: &ours,
        };
        let n = build_reply(out, &go);
        Ok((n, Some(spake_finish(state, theirs, M::Hello)?)))
    }

    /// Noise messages 3 to 5. `Ok(None)`: a wrong pairing code, and the viewer
    /// was told so (an empty frame where the verdict goes, then the reason).
    fn noise_messages(
        &self,
        mut noise: snow::HandshakeState,
        r: &mut DeadlineReader,
        w: &mut &TcpStream,
        pairing: bool,
        peer: SocketAddr,
    ) -> Result<Option<Shaken>> {
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let n = read_frame(r, &mut buf, M::NoiseE)?;
        noise_read(&mut noise, &buf[..n], &mut out, M::NoiseE)?;
        let n = noise_write(
            &mut noise,
            name_payload(&self.name),
            &mut out,
            M::NoiseServer,
        )?;
        write_frame(w, &out[..n], M::NoiseServer)?;
        let n = read_frame(r, &mut buf, M::NoiseViewer)?;
        let n = match noise_read(&mut noise, &buf[..n], &mut out, M::NoiseViewer) {
            Ok(n) => n,
            Err(SecureError::Noise {
                source: snow::Error::Decrypt,
                ..
            }) if pairing => {
                // The PSK differs: the viewer's code is not ours.
                self.wrong_code(peer);
                write_frame(w, &[], M::Verdict)?;
                write_frame(w, b"wrong pairing code", M::Reason)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(Some(Shaken {
            viewer_name: clean_name(&out[..n]),
            viewer_key: remote_key(&noise, Role::Viewer)?,
            noise,
        }))
    }

    /// Decides on the viewer (pairing adds it to the paired list), then sends the
    /// verdict as the link's first record.
    fn verdict(
        &self,
        mut shaken: Shaken,
        cipher: Cipher,
        w: &mut &TcpStream,
        pairing: bool,
        peer: SocketAddr,
    ) -> Result<Option<Accepted>> {
        let mut link = Link::server(Keys::split(&mut shaken.noise, cipher)?);
        let Shaken {
            viewer_key,
            viewer_name,
            ..
        } = shaken;
        let fp = fingerprint(&viewer_key);
        let welcome = if pairing {
            let entry = Peer {
                key: viewer_key,
                address: peer.ip().to_string(),
                name: viewer_name.clone(),
            };
            if let Err(e) = self.paired.add(entry) {
                log::warn!(
                    "viewer {peer} paired, but {e}: it will have to pair again after a restart"
                );
            }
            log::info!("paired with viewer \"{viewer_name}\" ({fp}) from {peer}");
            true
        } else {
            self.paired.contains(&viewer_key)
        };
        let mut record = [0u8; MAX_HANDSHAKE_FRAME];
        let n = if welcome {
            build_verdict(&mut record, &Verdict::Welcome)
        } else {
            let reason = format!(
                "this viewer (\"{viewer_name}\", key {fp}) is not paired with \"{}\": pair it \
                 once with `livestream view ADDRESS --pair CODE`, the code the server printed",
                self.name
            );
            let reason = reason.as_bytes();
            build_verdict(&mut record, &Verdict::NotPaired { reason })
        };
        let n = link
            .tx
            .seal(&mut record, n)
            .map_err(SecureError::io(M::Verdict))?;
        write_frame(w, &record[..n], M::Verdict)?;
        if !welcome {
            log::warn!("viewer {peer} (\"{viewer_name}\", key {fp}) refused: not paired");
            return Ok(None);
        }
        Ok(Some(Accepted {
            link,
            cipher,
            viewer_key,
            viewer_name,
        }))
    }

    /// Answers a secure hello when this server runs without encryption.
    pub fn refuse_plaintext_only(stream: &TcpStream, deadline: Instant) -> Result<()> {
        let mut r = DeadlineReader { stream, deadline };
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        let n = read_frame(&mut r, &mut buf, M::Hello)?;
        parse_hello(&buf[..n])?;
        let mut reply = [0u8; MAX_HANDSHAKE_FRAME];
        let n = build_reply(
            &mut reply,
            &Reply::PlaintextOnly {
                reason: b"this server has pairing and encryption turned off",
            },
        );
        write_frame(&mut &*stream, &reply[..n], M::Reply)
    }

    /// Forgets every paired viewer in memory: for tests of a server that no
    /// longer knows a viewer.
    #[cfg(test)]
    pub(super) fn forget_paired(&self) {
        self.paired.forget_all();
    }
}
