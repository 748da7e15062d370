//! The encrypted native connection: pairing, a Noise handshake, then records.
//! Specified in `docs/protocol.md` ("Encryption and pairing").
//!
//! Every message either way is a frame: a little-endian `u16` length and a body.
//!
//! 1. viewer → server, hello: `LSEC`, version 1, mode (0 paired before, 1 pairing
//!    now), flags (bit 0: the viewer has AES hardware), a reserved byte, and
//!    when pairing its SPAKE2 message (33 bytes).
//! 2. server → viewer, reply: `LSEC`, version 1, status (0 go on, 1 this server
//!    is plaintext only, 2 refused), the cipher chosen (0 ChaChaPoly, 1 AESGCM), a
//!    reserved byte, then the server's SPAKE2 message (pairing) or a refusal text.
//! 3. Noise XX (`Noise_XX_25519_{cipher}_SHA256`), or when pairing XXpsk3 with the
//!    SPAKE2 key as the PSK, with both messages above as the prologue: `→ e`,
//!    `← e, ee, s, es` (payload: the server's name), `→ s, se` (the viewer's name).
//!    A viewer that paired before checks the server's static key against its pins
//!    before it answers; a server checks the viewer's against its paired list.
//! 4. server → viewer, the verdict: a transport record (status 0 welcome, 1 not
//!    paired, with a message), or when the handshake failed at the server (a wrong
//!    pairing code) an empty frame and a plaintext frame saying why.
//! 5. Then the plaintext protocol (hellos and packets) rides in records: each a
//!    Noise transport message of at most 65535 bytes, nonces counting from 0 in
//!    each direction, so a dropped, reordered, replayed or altered record fails
//!    authentication and ends the connection.
//!
//! A short code is a weak key, so it never is one: SPAKE2 turns it into a strong
//! one that an eavesdropper cannot test guesses against, and an active attacker
//! gets one guess per connection (and the server a new code after
//! [`MAX_WRONG_CODES`] wrong ones).

pub mod trust;

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Instant;

use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::net::protocol::DeadlineReader;
use trust::{clean_name, fingerprint, KeyPair, PairingCode, Peer, PeerList, PublicKey};

pub const MAGIC: [u8; 4] = *b"LSEC";
pub const VERSION: u8 = 1;
/// The largest Noise message, and so the largest record.
pub const MAX_RECORD: usize = 65535;
pub const TAG_LEN: usize = 16;
/// The most plaintext one record carries.
pub const MAX_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;
/// Handshake frames are small; a longer one is refused before it is read.
const MAX_HANDSHAKE_FRAME: usize = 2048;
const HELLO_LEN: usize = 8;
const SPAKE_LEN: usize = 33;
/// Wrong pairing codes tried before the server makes a new code.
pub const MAX_WRONG_CODES: u32 = 5;

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

/// The AEAD both sides use after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    ChaChaPoly,
    AesGcm,
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
    fn name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AESGCM",
        }
    }
}

/// The Noise protocol for a cipher, with or without the pairing PSK.
pub fn params(cipher: Cipher, psk: bool) -> snow::params::NoiseParams {
    let pattern = if psk { "XXpsk3" } else { "XX" };
    format!("Noise_{pattern}_25519_{}_SHA256", cipher.name())
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

/// Why a secure connection was not made. Most are final: retrying cannot help.
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
    Handshake(String),
    #[error("keys: {0}")]
    Trust(#[from] trust::TrustError),
}

impl SecureError {
    /// True when connecting again cannot help (a person must act).
    pub fn is_final(&self) -> bool {
        !matches!(self, SecureError::Refused(_) | SecureError::Handshake(_))
    }
}

type Result<T> = std::result::Result<T, crate::net::protocol::ProtocolError>;

fn handshake_error(
    what: &str,
) -> impl FnOnce(snow::Error) -> crate::net::protocol::ProtocolError + '_ {
    move |e| SecureError::Handshake(format!("{what}: {e}")).into()
}

fn invalid(why: String) -> crate::net::protocol::ProtocolError {
    crate::net::protocol::ProtocolError::Invalid {
        what: "secure handshake",
        why,
    }
}

// ---- frames ---------------------------------------------------------------------

fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    debug_assert!(body.len() <= MAX_RECORD);
    let len = (body.len() as u16).to_le_bytes();
    crate::net::protocol::write_all_vectored(w, &mut [IoSlice::new(&len), IoSlice::new(body)])
}

/// Reads one handshake frame into `buf`; returns its body.
fn read_frame<'b>(r: &mut impl Read, buf: &'b mut [u8; MAX_HANDSHAKE_FRAME]) -> Result<&'b [u8]> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = u16::from_le_bytes(len) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(crate::net::protocol::ProtocolError::TooLong {
            what: "handshake message",
            len,
            max: MAX_HANDSHAKE_FRAME,
        });
    }
    r.read_exact(&mut buf[..len])?;
    Ok(&buf[..len])
}

/// The Noise handshake for one side: pairing (with the PSK) or not, bound to the
/// two plaintext messages before it by the prologue.
fn noise(
    keys: &KeyPair,
    cipher: Cipher,
    psk: Option<&[u8; 32]>,
    [hello, reply]: [&[u8]; 2],
    initiator: bool,
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
        .and_then(|b| {
            if initiator {
                b.build_initiator()
            } else {
                b.build_responder()
            }
        })
        .map_err(handshake_error("setting up"))
}

fn spake_key(state: Spake2<Ed25519Group>, theirs: &[u8]) -> Result<[u8; 32]> {
    let key = state
        .finish(theirs)
        .map_err(|e| invalid(format!("pairing message: {e:?}")))?;
    key.try_into()
        .map_err(|_| invalid("pairing key is not 32 bytes".into()))
}

/// This machine's `server.key` or `viewer.key` in `dir`, made the first time.
fn load_key(dir: &std::path::Path, role: &str) -> std::result::Result<KeyPair, SecureError> {
    let (keys, created) = KeyPair::load_or_create(&dir.join(format!("{role}.key")))?;
    if created {
        log::info!(
            "created this {role}'s key {} in {}",
            fingerprint(&keys.public),
            dir.display()
        );
    }
    Ok(keys)
}

// ---- server ---------------------------------------------------------------------

/// The server's side: its key, its pairing code and the viewers paired with it.
pub struct ServerAuth {
    keys: KeyPair,
    name: String,
    pairing: Mutex<Pairing>,
    paired: Mutex<PeerList>,
}

struct Pairing {
    code: PairingCode,
    wrong: u32,
}

/// A viewer past the handshake.
pub struct Accepted {
    pub keys: Keys,
    pub cipher: Cipher,
    pub viewer_key: PublicKey,
    pub viewer_name: String,
}

impl ServerAuth {
    /// Loads (or creates) the server's key and paired list from `dir`.
    pub fn open(dir: &std::path::Path, name: &str) -> std::result::Result<ServerAuth, SecureError> {
        let keys = load_key(dir, "server")?;
        let paired = PeerList::load(&dir.join("paired-viewers"))?;
        Ok(ServerAuth {
            keys,
            name: name.into(),
            pairing: Mutex::new(Pairing {
                code: PairingCode::generate(),
                wrong: 0,
            }),
            paired: Mutex::new(paired),
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
        self.paired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peers
            .len()
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
    /// are [`MAGIC`] (framed). `Ok(None)`: refused, and the viewer was told why.
    pub fn accept(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<Option<Accepted>> {
        let mut r = DeadlineReader { stream, deadline };
        let mut w = stream;
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        let hello = read_frame(&mut r, &mut buf)?.to_vec();
        let pairing = check_hello(&hello)?;
        let cipher = if hello[6] & FLAG_AES != 0 && has_aes_hardware() {
            Cipher::AesGcm
        } else {
            Cipher::ChaChaPoly
        };
        let mut reply = vec![0u8; HELLO_LEN];
        reply[..4].copy_from_slice(&MAGIC);
        reply[4] = VERSION;
        reply[5] = STATUS_GO;
        reply[6] = cipher as u8;
        let psk = if pairing {
            let code = self.code();
            let (state, ours) = Spake2::<Ed25519Group>::start_b(
                &Password::new(code.digits()),
                &Identity::new(SPAKE_VIEWER),
                &Identity::new(SPAKE_SERVER),
            );
            reply.extend_from_slice(&ours);
            Some(spake_key(state, &hello[HELLO_LEN..])?)
        } else {
            None
        };
        write_frame(&mut w, &reply)?;
        let mut noise = noise(&self.keys, cipher, psk.as_ref(), [&hello, &reply], false)?;
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let msg = read_frame(&mut r, &mut buf)?;
        noise
            .read_message(msg, &mut out)
            .map_err(handshake_error("first message"))?;
        let name = &self.name.as_bytes()[..self.name.len().min(trust::MAX_NAME)];
        let n = noise
            .write_message(name, &mut out)
            .map_err(handshake_error("second message"))?;
        write_frame(&mut w, &out[..n])?;
        let msg = read_frame(&mut r, &mut buf)?;
        let n = match noise.read_message(msg, &mut out) {
            Ok(n) => n,
            Err(snow::Error::Decrypt) if pairing => {
                self.wrong_code(peer);
                write_frame(&mut w, &[])?;
                write_frame(&mut w, b"wrong pairing code")?;
                return Ok(None);
            }
            Err(e) => return Err(handshake_error("third message")(e)),
        };
        let viewer_name = clean_name(&out[..n]);
        let viewer_key: PublicKey = noise
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| invalid("no static key from the viewer".into()))?;
        let keys = Keys::split(&mut noise, cipher, false)?;
        let fp = fingerprint(&viewer_key);
        let welcome = {
            let mut paired = self.paired.lock().unwrap_or_else(|e| e.into_inner());
            if pairing {
                let peer_entry = Peer {
                    key: viewer_key,
                    address: peer.ip().to_string(),
                    name: viewer_name.clone(),
                };
                if let Err(e) = paired.add(peer_entry, false) {
                    log::warn!(
                        "viewer {peer} paired, but {e}: it will have to pair again after a restart"
                    );
                }
                log::info!("paired with viewer \"{viewer_name}\" ({fp}) from {peer}");
                true
            } else {
                paired.find_key(&viewer_key).is_some()
            }
        };
        let mut verdict = vec![if welcome {
            VERDICT_WELCOME
        } else {
            VERDICT_NOT_PAIRED
        }];
        if !welcome {
            verdict.extend_from_slice(
                format!(
                    "this viewer (\"{viewer_name}\", key {fp}) is not paired with \"{}\": pair it once \
                     with `livestream view ADDRESS --pair CODE`, the code the server printed",
                    self.name
                )
                .as_bytes(),
            );
        }
        let mut record = [0u8; MAX_HANDSHAKE_FRAME];
        record[..verdict.len()].copy_from_slice(&verdict);
        let n = keys
            .sealer()
            .seal(0, &mut record, verdict.len())
            .map_err(other)?;
        write_frame(&mut w, &record[..n])?;
        if !welcome {
            log::warn!("viewer {peer} (\"{viewer_name}\", key {fp}) refused: not paired");
            return Ok(None);
        }
        Ok(Some(Accepted {
            keys,
            cipher,
            viewer_key,
            viewer_name,
        }))
    }

    /// Answers a secure hello when this server runs without encryption.
    pub fn refuse_plaintext_only(stream: &TcpStream, deadline: Instant) -> Result<()> {
        let mut r = DeadlineReader { stream, deadline };
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        check_hello(read_frame(&mut r, &mut buf)?)?;
        let mut reply = Vec::with_capacity(128);
        reply.extend_from_slice(&MAGIC);
        reply.extend_from_slice(&[VERSION, STATUS_PLAINTEXT, 0, 0]);
        reply.extend_from_slice(b"this server has pairing and encryption turned off");
        write_frame(&mut &*stream, &reply)?;
        Ok(())
    }
}

/// Checks a viewer's hello; returns whether it is pairing.
fn check_hello(hello: &[u8]) -> Result<bool> {
    if hello.len() < HELLO_LEN || hello[..4] != MAGIC {
        return Err(invalid("not a livestream secure hello".into()));
    }
    if hello[4] != VERSION {
        return Err(invalid(format!(
            "secure version {} (this side speaks {VERSION})",
            hello[4]
        )));
    }
    match (hello[5], hello.len() - HELLO_LEN) {
        (MODE_PAIRED, 0) => Ok(false),
        (MODE_PAIRING, SPAKE_LEN) => Ok(true),
        (mode, extra) => Err(invalid(format!(
            "mode {mode} with {extra} bytes of pairing data"
        ))),
    }
}

// ---- viewer ---------------------------------------------------------------------

/// The viewer's side: its key, the servers it trusts and, when pairing, the code.
pub struct ViewerAuth {
    keys: KeyPair,
    known: PeerList,
    code: Option<PairingCode>,
    name: String,
}

/// A server past the handshake, not yet pinned: see [`ViewerAuth::confirm`].
pub struct Connected {
    pub keys: Keys,
    pub server_key: PublicKey,
    pub server_name: String,
}

impl ViewerAuth {
    pub fn open(
        dir: &std::path::Path,
        code: Option<PairingCode>,
    ) -> std::result::Result<ViewerAuth, SecureError> {
        let keys = load_key(dir, "viewer")?;
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
        let pairing = self.code.is_some();
        let mut hello = vec![0u8; HELLO_LEN];
        hello[..4].copy_from_slice(&MAGIC);
        hello[4] = VERSION;
        hello[5] = if pairing { MODE_PAIRING } else { MODE_PAIRED };
        hello[6] = if has_aes_hardware() { FLAG_AES } else { 0 };
        let spake = self.code.as_ref().map(|code| {
            let (state, ours) = Spake2::<Ed25519Group>::start_a(
                &Password::new(code.digits()),
                &Identity::new(SPAKE_VIEWER),
                &Identity::new(SPAKE_SERVER),
            );
            hello.extend_from_slice(&ours);
            state
        });
        write_frame(&mut w, &hello)?;
        let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
        let reply = read_frame(&mut r, &mut buf)?.to_vec();
        if reply.len() < HELLO_LEN || reply[..4] != MAGIC || reply[4] != VERSION {
            return Err(invalid("not a livestream secure reply".into()));
        }
        let text = || clean_name(&reply[HELLO_LEN..]);
        let cipher = match (reply[5], reply[6]) {
            (STATUS_GO, 0) => Cipher::ChaChaPoly,
            (STATUS_GO, 1) => Cipher::AesGcm,
            (STATUS_PLAINTEXT, _) => {
                return Err(SecureError::PlaintextServer {
                    address: address.into(),
                    message: text(),
                }
                .into())
            }
            (STATUS_REFUSED, _) => return Err(SecureError::Refused(text()).into()),
            (status, cipher) => {
                return Err(invalid(format!("reply status {status}, cipher {cipher}")))
            }
        };
        let psk = match spake {
            Some(state) if reply.len() == HELLO_LEN + SPAKE_LEN => {
                Some(spake_key(state, &reply[HELLO_LEN..])?)
            }
            Some(_) => return Err(invalid("no pairing message in the reply".into())),
            None => None,
        };
        let mut noise = noise(&self.keys, cipher, psk.as_ref(), [&hello, &reply], true)?;
        let mut out = [0u8; MAX_HANDSHAKE_FRAME];
        let n = noise
            .write_message(&[], &mut out)
            .map_err(handshake_error("first message"))?;
        write_frame(&mut w, &out[..n])?;
        let msg = read_frame(&mut r, &mut buf)?;
        let n = noise
            .read_message(msg, &mut out)
            .map_err(handshake_error("second message"))?;
        let server_name = clean_name(&out[..n]);
        let server_key: PublicKey = noise
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| invalid("no static key from the server".into()))?;
        if !pairing {
            self.check_pin(address, &server_name, &server_key)?;
        }
        let name = &self.name.as_bytes()[..self.name.len().min(trust::MAX_NAME)];
        let n = noise
            .write_message(name, &mut out)
            .map_err(handshake_error("third message"))?;
        write_frame(&mut w, &out[..n])?;
        let keys = Keys::split(&mut noise, cipher, true)?;
        let verdict = read_frame(&mut r, &mut buf)?;
        if verdict.is_empty() {
            let why = clean_name(read_frame(&mut r, &mut buf)?);
            return Err(if pairing {
                SecureError::WrongCode {
                    address: address.into(),
                    message: why,
                }
            } else {
                SecureError::Refused(why)
            }
            .into());
        }
        let n = verdict.len();
        out[..n].copy_from_slice(verdict);
        let n = keys
            .opener()
            .open(0, &mut out[..n])
            .map_err(|_| SecureError::Handshake("the verdict did not open".into()))?;
        match out[..n].split_first() {
            Some((&VERDICT_WELCOME, _)) => {}
            Some((&VERDICT_NOT_PAIRED, why)) => {
                return Err(SecureError::ViewerNotPaired(clean_why(why)).into())
            }
            _ => return Err(invalid("unknown verdict".into())),
        }
        Ok(Connected {
            keys,
            server_key,
            server_name,
        })
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
        }
        .into())
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

/// A refusal text from the network, made printable (it may be long: not a name).
fn clean_why(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(1024)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---- records --------------------------------------------------------------------

/// The two transport keys of a finished handshake, one per direction.
pub struct Keys {
    send: [u8; 32],
    recv: [u8; 32],
    cipher: Cipher,
}

impl Keys {
    /// Takes the keys from a finished handshake. The records are sealed by ring
    /// directly rather than by snow's transport: snow opens only into a second
    /// buffer, and the viewer opens a record in place where it was read (one copy
    /// of each frame less). They are Noise transport messages all the same (a unit
    /// test opens ours with snow's transport and the other way round).
    pub(crate) fn split(
        noise: &mut snow::HandshakeState,
        cipher: Cipher,
        initiator: bool,
    ) -> Result<Keys> {
        if !noise.is_handshake_finished() {
            return Err(SecureError::Handshake("not finished".into()).into());
        }
        let (i_to_r, r_to_i) = noise.dangerously_get_raw_split();
        let (send, recv) = if initiator {
            (i_to_r, r_to_i)
        } else {
            (r_to_i, i_to_r)
        };
        Ok(Keys { send, recv, cipher })
    }

    pub fn sealer(&self) -> Aead {
        Aead::new(self.cipher, &self.send)
    }

    pub fn opener(&self) -> Aead {
        Aead::new(self.cipher, &self.recv)
    }
}

/// Two finished Noise XX handshake states (initiator, responder), made in
/// memory with new keys: for benchmarks and tests of the records.
pub fn handshake_in_memory(
    cipher: Cipher,
) -> std::result::Result<(snow::HandshakeState, snow::HandshakeState), snow::Error> {
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
pub struct Aead {
    /// Boxed: ring's key schedule is large, and `Tx`/`Rx` hold it by value.
    key: Box<ring::aead::LessSafeKey>,
    cipher: Cipher,
}

impl Aead {
    fn new(cipher: Cipher, key: &[u8; 32]) -> Aead {
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
    pub fn seal(&self, nonce: u64, buf: &mut [u8], len: usize) -> io::Result<usize> {
        if buf.len() < len + TAG_LEN || len > MAX_PLAINTEXT {
            return Err(other("no room for a record"));
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(nonce),
                ring::aead::Aad::empty(),
                &mut buf[..len],
            )
            .map_err(|_| other("sealing failed"))?;
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    /// Opens a record in place; returns the plaintext's length (at the start of
    /// `record`).
    pub fn open(&self, nonce: u64, record: &mut [u8]) -> io::Result<usize> {
        self.key
            .open_in_place(self.nonce(nonce), ring::aead::Aad::empty(), record)
            .map(|plain| plain.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, AUTH_FAILED))
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes plaintext as sealed records. Small pieces are gathered into one record;
/// large ones are copied from the caller's buffer into the output and sealed
/// there (the one copy: the caller's frame is shared by every viewer). Nothing is
/// allocated after `new`.
pub struct SealWriter<W: Write> {
    inner: W,
    aead: Aead,
    nonce: u64,
    /// Plaintext gathered for the next record.
    stage: Box<[u8]>,
    staged: usize,
    /// Sealed records waiting to be written.
    out: Box<[u8]>,
    filled: usize,
}

/// Records written per `write` call at most: 4 × 64 KiB.
const OUT_RECORDS: usize = 4;

impl<W: Write> SealWriter<W> {
    /// `nonce`: the next transport nonce this side sends with.
    pub fn new(inner: W, aead: Aead, nonce: u64) -> SealWriter<W> {
        SealWriter {
            inner,
            aead,
            nonce,
            stage: vec![0; MAX_PLAINTEXT].into_boxed_slice(),
            staged: 0,
            out: vec![0; OUT_RECORDS * (2 + MAX_RECORD)].into_boxed_slice(),
            filled: 0,
        }
    }

    fn seal(
        aead: &Aead,
        nonce: &mut u64,
        out: &mut [u8],
        filled: &mut usize,
        inner: &mut W,
        plain: &[u8],
    ) -> io::Result<()> {
        if *filled + 2 + plain.len() + TAG_LEN > out.len() {
            inner.write_all(&out[..*filled])?;
            *filled = 0;
        }
        let at = *filled + 2;
        out[at..at + plain.len()].copy_from_slice(plain);
        let n = aead.seal(*nonce, &mut out[at..], plain.len())?;
        out[*filled..at].copy_from_slice(&(n as u16).to_le_bytes());
        *nonce = nonce
            .checked_add(1)
            .ok_or_else(|| other("record counter exhausted"))?;
        *filled = at + n;
        Ok(())
    }

    fn seal_stage(&mut self) -> io::Result<()> {
        if self.staged > 0 {
            Self::seal(
                &self.aead,
                &mut self.nonce,
                &mut self.out,
                &mut self.filled,
                &mut self.inner,
                &self.stage[..self.staged],
            )?;
            self.staged = 0;
        }
        Ok(())
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Seals and writes everything given (a partial write would tear a record).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for buf in bufs {
            let mut data: &[u8] = buf;
            total += data.len();
            while !data.is_empty() {
                if self.staged == 0 && data.len() >= MAX_PLAINTEXT {
                    let (record, rest) = data.split_at(MAX_PLAINTEXT);
                    Self::seal(
                        &self.aead,
                        &mut self.nonce,
                        &mut self.out,
                        &mut self.filled,
                        &mut self.inner,
                        record,
                    )?;
                    data = rest;
                } else {
                    let take = (MAX_PLAINTEXT - self.staged).min(data.len());
                    self.stage[self.staged..self.staged + take].copy_from_slice(&data[..take]);
                    self.staged += take;
                    data = &data[take..];
                    if self.staged == MAX_PLAINTEXT {
                        self.seal_stage()?;
                    }
                }
            }
        }
        self.seal_stage()?;
        self.inner.write_all(&self.out[..self.filled])?;
        self.filled = 0;
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads sealed records and gives their plaintext. A record that fails
/// authentication (altered, replayed, reordered, or sealed with another key) is
/// an `InvalidData` error, and the connection is over.
///
/// A read with room for a whole record (a frame's payload) gets the record read
/// from `inner` straight into its buffer and opened there in place: no copy
/// besides the kernel's. Smaller reads go through `input`.
pub struct OpenReader<R: Read> {
    inner: R,
    aead: Aead,
    nonce: u64,
    /// Bytes read from `inner`, not yet used: `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// The plaintext of a record opened in `input`, not yet read:
    /// `input[plain_at..plain_end]` (then `start` is past that record).
    plain_at: usize,
    plain_end: usize,
}

/// The message for a record that does not open.
pub const AUTH_FAILED: &str =
    "a record failed authentication: the data was altered or replayed in transit, or does not come from the paired peer";

impl<R: Read> OpenReader<R> {
    /// `nonce`: the next transport nonce the peer sends with.
    pub fn new(inner: R, aead: Aead, nonce: u64) -> OpenReader<R> {
        OpenReader {
            inner,
            aead,
            nonce,
            input: vec![0; 2 * (2 + MAX_RECORD)].into_boxed_slice(),
            start: 0,
            end: 0,
            plain_at: 0,
            plain_end: 0,
        }
    }

    /// The same reader over another handle to the connection (the handshake reads
    /// under a deadline, the stream after it without).
    pub fn with_inner<R2: Read>(self, inner: R2) -> OpenReader<R2> {
        OpenReader {
            inner,
            aead: self.aead,
            nonce: self.nonce,
            input: self.input,
            start: self.start,
            end: self.end,
            plain_at: self.plain_at,
            plain_end: self.plain_end,
        }
    }

    /// Makes `input[start..end]` hold at least `need` bytes, reading at most
    /// `need` more when `exact` (so that what follows can go straight to the
    /// caller); false at a clean end.
    fn fill(&mut self, need: usize, exact: bool) -> io::Result<bool> {
        if self.start + need > self.input.len() {
            // Nothing before `start` is in use: the plaintext was read out.
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < need {
            let limit = if exact {
                self.start + need
            } else {
                self.input.len()
            };
            let n = match self.inner.read(&mut self.input[self.end..limit]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.end == self.start {
                    return Ok(false);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
        Ok(true)
    }

    fn next_nonce(&mut self) -> u64 {
        let n = self.nonce;
        self.nonce += 1;
        n
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.plain_at < self.plain_end {
                let n = (self.plain_end - self.plain_at).min(buf.len());
                buf[..n].copy_from_slice(&self.input[self.plain_at..self.plain_at + n]);
                self.plain_at += n;
                return Ok(n);
            }
            let direct = buf.len() >= MAX_RECORD;
            if !self.fill(2, direct && self.start == self.end)? {
                return Ok(0);
            }
            let len =
                u16::from_le_bytes([self.input[self.start], self.input[self.start + 1]]) as usize;
            if len < TAG_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a record of {len} bytes, shorter than its tag"),
                ));
            }
            if buf.len() >= len {
                // What of the record is here already, then the rest from the
                // socket, into the caller's buffer; opened there.
                let have = (self.end - self.start - 2).min(len);
                buf[..have].copy_from_slice(&self.input[self.start + 2..self.start + 2 + have]);
                self.start += 2 + have;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                read_all(&mut self.inner, &mut buf[have..len])?;
                let nonce = self.next_nonce();
                let n = self.aead.open(nonce, &mut buf[..len])?;
                if n > 0 {
                    return Ok(n);
                }
            } else {
                self.fill(2 + len, false)?;
                let at = self.start + 2;
                let nonce = self.next_nonce();
                let n = self.aead.open(nonce, &mut self.input[at..at + len])?;
                self.start = at + len;
                (self.plain_at, self.plain_end) = (at, at + n);
            }
        }
    }
}

/// `read_exact`, with an end of stream in the middle reported as such.
fn read_all(r: &mut impl Read, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The sending half of a native connection: plaintext (`auth = "none"`) or sealed.
pub enum Tx<W: Write> {
    Plain(W),
    Sealed(SealWriter<W>),
}

impl<W: Write> Write for Tx<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Tx::Plain(w) => w.write(buf),
            Tx::Sealed(w) => w.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Tx::Plain(w) => w.write_vectored(bufs),
            Tx::Sealed(w) => w.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Tx::Plain(w) => w.flush(),
            Tx::Sealed(w) => w.flush(),
        }
    }
}

/// The receiving half of a native connection.
pub enum Rx<R: Read> {
    Plain(io::BufReader<R>),
    Opened(OpenReader<R>),
}

impl<R: Read> Read for Rx<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Rx::Plain(r) => r.read(buf),
            Rx::Opened(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

    /// What each side of one handshake got.
    type Shake = (
        Result<(Connected, TcpStream)>,
        Result<Option<(Accepted, TcpStream)>>,
    );

    /// A server and a viewer, each with its own key directory, over loopback.
    struct Pair {
        server: Arc<ServerAuth>,
        listener: TcpListener,
        _dirs: (tempfile::TempDir, tempfile::TempDir),
        viewer_dir: std::path::PathBuf,
    }

    impl Pair {
        fn new() -> Pair {
            let (s, v) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let server = Arc::new(ServerAuth::open(s.path(), "test cam").unwrap());
            Pair {
                server,
                listener: TcpListener::bind("127.0.0.1:0").unwrap(),
                viewer_dir: v.path().to_path_buf(),
                _dirs: (s, v),
            }
        }

        /// One handshake; returns the viewer's and the server's results.
        fn shake(&self, viewer: &mut ViewerAuth) -> Shake {
            let addr = self.listener.local_addr().unwrap();
            let server = self.server.clone();
            let listener = self.listener.try_clone().unwrap();
            let t = std::thread::spawn(move || {
                let (s, peer) = listener.accept().unwrap();
                let deadline = Instant::now() + Duration::from_secs(5);
                server.accept(&s, peer, deadline).map(|a| a.map(|a| (a, s)))
            });
            let s = TcpStream::connect(addr).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let v = viewer.connect(&s, &addr.to_string(), deadline);
            if let Ok(c) = &v {
                viewer.confirm(c, &addr.to_string());
            }
            (v.map(|c| (c, s)), t.join().unwrap())
        }
    }

    fn secure_err<T>(r: Result<T>) -> SecureError {
        match r {
            Err(crate::net::protocol::ProtocolError::Secure(e)) => e,
            Err(e) => panic!("not a secure error: {e}"),
            Ok(_) => panic!("succeeded"),
        }
    }

    #[test]
    fn pairing_then_pinned_then_records_both_ways() {
        let p = Pair::new();
        let code = p.server.code();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(code)).unwrap();
        let (v, s) = p.shake(&mut viewer);
        let (connected, vs) = v.unwrap();
        let (accepted, ss) = s.unwrap().unwrap();
        assert_eq!(connected.server_name, "test cam");
        assert_eq!(&connected.server_key, p.server.public_key());
        assert_eq!(p.server.paired_count(), 1);

        // Records: a large write arrives whole, in order, both ways.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut tx = SealWriter::new(&ss, accepted.keys.sealer(), 1);
        let n = tx
            .write_vectored(&[IoSlice::new(b"head"), IoSlice::new(&big)])
            .unwrap();
        assert_eq!(n, 4 + big.len(), "all of it, or the records would tear");
        let mut rx = OpenReader::new(&vs, connected.keys.opener(), 1);
        let mut got = vec![0u8; 4 + big.len()];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], b"head");
        assert!(got[4..] == big[..]);
        let mut up = SealWriter::new(&vs, connected.keys.sealer(), 0);
        up.write_all(b"ping").unwrap();
        let mut down = OpenReader::new(&ss, accepted.keys.opener(), 0);
        let mut b = [0u8; 4];
        down.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");

        // Later, no code: the pin and the server's list admit the viewer.
        let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
        let (v, s) = p.shake(&mut viewer);
        assert!(v.is_ok() && matches!(s, Ok(Some(_))));
    }

    #[test]
    fn wrong_code_and_no_pairing_are_refused_with_reasons() {
        let p = Pair::new();
        let right = p.server.code();
        let wrong = PairingCode::parse(if right.to_string() == "1111-1111" {
            "2222-2222"
        } else {
            "1111-1111"
        })
        .unwrap();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(wrong.clone())).unwrap();
        let (v, s) = p.shake(&mut viewer);
        assert!(matches!(secure_err(v), SecureError::WrongCode { .. }));
        assert!(matches!(s, Ok(None)));
        assert_eq!(p.server.paired_count(), 0);

        let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
        let (v, _) = p.shake(&mut viewer);
        let e = secure_err(v);
        assert!(matches!(e, SecureError::NotPaired { .. }), "{e}");
        assert!(e.to_string().contains("--pair CODE"), "{e}");

        // Enough wrong codes and the code changes.
        for _ in 1..MAX_WRONG_CODES {
            let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(wrong.clone())).unwrap();
            let _ = p.shake(&mut viewer);
        }
        assert!(p.server.code() != right, "the code did not change");
    }

    #[test]
    fn a_changed_server_key_is_refused() {
        let p = Pair::new();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
        let (v, _) = p.shake(&mut viewer);
        v.unwrap();
        // Another server (a new key) answers at the same address, same name.
        let other_dir = tempfile::tempdir().unwrap();
        let impostor = Pair {
            server: Arc::new(ServerAuth::open(other_dir.path(), "test cam").unwrap()),
            listener: p.listener.try_clone().unwrap(),
            viewer_dir: p.viewer_dir.clone(),
            _dirs: (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()),
        };
        let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
        let (v, _) = impostor.shake(&mut viewer);
        let e = secure_err(v);
        assert!(matches!(e, SecureError::KeyChanged { .. }), "{e}");
        assert!(e.to_string().contains("impostor"), "{e}");
    }

    #[test]
    fn an_unpaired_viewer_with_a_pin_is_refused_by_the_server() {
        let p = Pair::new();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
        p.shake(&mut viewer).0.unwrap();
        // The server forgets its viewers.
        p.server.paired.lock().unwrap().peers.clear();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
        let (v, s) = p.shake(&mut viewer);
        let e = secure_err(v);
        assert!(matches!(e, SecureError::ViewerNotPaired(_)), "{e}");
        assert!(matches!(s, Ok(None)));
    }

    /// Random and mutated handshakes, both ways: refused, never a panic, never
    /// stuck past the deadline.
    #[test]
    fn garbage_handshakes_are_refused_both_ways() {
        let p = Pair::new();
        let addr = p.listener.local_addr().unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut good = vec![8u8, 0];
        good.extend_from_slice(&MAGIC);
        good.extend_from_slice(&[VERSION, MODE_PAIRING, 0, 0]);
        for round in 0..60 {
            let mut bytes = good.clone();
            bytes.extend((0..rng.usize(0..80)).map(|_| rng.u8(..)));
            if round % 2 == 0 {
                let i = rng.usize(..bytes.len());
                bytes[i] = rng.u8(..);
            }
            let server = p.server.clone();
            let listener = p.listener.try_clone().unwrap();
            let t = std::thread::spawn(move || {
                let (s, peer) = listener.accept().unwrap();
                let deadline = Instant::now() + Duration::from_millis(300);
                server.accept(&s, peer, deadline).map(|a| a.is_some())
            });
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(&bytes);
            let result = t.join().expect("the server side panicked");
            assert!(!matches!(result, Ok(true)), "round {round}: admitted");
        }
        // A fake server answering random frames to a viewer.
        let viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
        for round in 0..60 {
            let mut answer = vec![0u8; rng.usize(0..200)];
            rng.fill(&mut answer);
            if round % 3 == 0 && answer.len() > 8 {
                let len = (answer.len() - 2) as u16;
                answer[..2].copy_from_slice(&len.to_le_bytes());
                answer[2..6].copy_from_slice(&MAGIC);
                answer[6] = VERSION;
            }
            let listener = p.listener.try_clone().unwrap();
            let t = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let _ = s.write_all(&answer);
                std::thread::sleep(Duration::from_millis(20));
            });
            let s = TcpStream::connect(addr).unwrap();
            let deadline = Instant::now() + Duration::from_millis(300);
            assert!(viewer.connect(&s, &addr.to_string(), deadline).is_err());
            t.join().unwrap();
        }
    }

    /// Our records are Noise transport messages: snow's own transport opens what
    /// we seal and the other way round, with both ciphers.
    #[test]
    fn records_are_noise_transport_messages() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            let (mut i, mut r) = handshake_in_memory(cipher).unwrap();
            let ours = Keys::split(&mut i, cipher, true).unwrap();
            let theirs = Keys::split(&mut r, cipher, false).unwrap();
            let snow_i = i.into_stateless_transport_mode().unwrap();
            let snow_r = r.into_stateless_transport_mode().unwrap();
            for nonce in [0u64, 1, 300, 1 << 40] {
                let text = format!("frame {nonce}");
                let mut buf = [0u8; 256];
                buf[..text.len()].copy_from_slice(text.as_bytes());
                let n = ours.sealer().seal(nonce, &mut buf, text.len()).unwrap();
                let mut plain = [0u8; 256];
                let m = snow_r.read_message(nonce, &buf[..n], &mut plain).unwrap();
                assert_eq!(&plain[..m], text.as_bytes(), "{cipher} seal → snow");

                let n = snow_r
                    .write_message(nonce, text.as_bytes(), &mut buf)
                    .unwrap();
                let mut copy = buf;
                assert!(
                    ours.opener().open(nonce + 1, &mut copy[..n]).is_err(),
                    "{cipher}: opened under the wrong nonce"
                );
                let m = ours.opener().open(nonce, &mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], text.as_bytes(), "{cipher} snow → open");

                // The other direction, the responder's keys against snow's initiator.
                buf[..text.len()].copy_from_slice(text.as_bytes());
                let n = theirs.sealer().seal(nonce, &mut buf, text.len()).unwrap();
                let m = snow_i.read_message(nonce, &buf[..n], &mut plain).unwrap();
                assert_eq!(
                    &plain[..m],
                    text.as_bytes(),
                    "{cipher} responder seal → snow"
                );
                let n = snow_i
                    .write_message(nonce, text.as_bytes(), &mut buf)
                    .unwrap();
                let m = theirs.opener().open(nonce, &mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], text.as_bytes(), "{cipher} snow → responder open");
            }
        }
    }

    /// Reads of every size, small (through the input buffer) and large (opened
    /// in place in the caller's buffer), in any mix, give back exactly what was
    /// written, whatever the inner reader hands over at a time.
    #[test]
    fn records_open_whatever_the_read_sizes() {
        let (mut i, mut r) = handshake_in_memory(Cipher::AesGcm).unwrap();
        let (tx, rx) = (
            Keys::split(&mut i, Cipher::AesGcm, true).unwrap(),
            Keys::split(&mut r, Cipher::AesGcm, false).unwrap(),
        );
        let mut rng = fastrand::Rng::with_seed(5);
        let sent: Vec<u8> = (0..1_500_000).map(|_| rng.u8(..)).collect();
        let mut wire = Vec::new();
        let mut w = SealWriter::new(&mut wire, tx.sealer(), 0);
        let mut at = 0;
        while at < sent.len() {
            let n = rng.usize(0..300_000).min(sent.len() - at);
            w.write_all(&sent[at..at + n]).unwrap();
            at += n;
        }
        /// Hands over at most a random number of bytes per read.
        struct Trickle<'a>(&'a [u8], fastrand::Rng);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.usize(1..=200_000).min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = OpenReader::new(Trickle(&wire, fastrand::Rng::with_seed(9)), rx.opener(), 0);
        let mut got = vec![0u8; sent.len()];
        let mut at = 0;
        while at < got.len() {
            let want = [1, 24, 1000, 65_535, 65_536, 70_000, 400_000][rng.usize(..7)];
            let end = (at + want).min(got.len());
            r.read_exact(&mut got[at..end]).unwrap();
            at = end;
        }
        assert!(got == sent);
        let mut rest = [0u8; 8];
        assert_eq!(
            r.read(&mut rest).unwrap(),
            0,
            "a clean end after the last record"
        );
    }

    #[test]
    fn altered_and_replayed_records_fail() {
        let p = Pair::new();
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
        let (v, s) = p.shake(&mut viewer);
        let (c, _) = v.unwrap();
        let (a, _) = s.unwrap().unwrap();
        let mut wire = Vec::new();
        let mut tx = SealWriter::new(&mut wire, a.keys.sealer(), 1);
        tx.write_all(b"first").unwrap();
        tx.write_all(b"second").unwrap();
        let first_len = 2 + 5 + TAG_LEN;
        let read = |bytes: &[u8]| {
            let mut rx = OpenReader::new(bytes, c.keys.opener(), 1);
            let mut out = Vec::new();
            rx.read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read(&wire).unwrap(), b"firstsecond");
        let mut altered = wire.clone();
        altered[first_len + 3] ^= 1;
        assert!(read(&altered)
            .unwrap_err()
            .to_string()
            .contains("failed authentication"));
        let replayed = [&wire[..first_len], &wire[..first_len]].concat();
        assert!(read(&replayed).is_err());
        let reordered = [&wire[first_len..], &wire[..first_len]].concat();
        assert!(read(&reordered).is_err());
        assert!(read(&wire[..wire.len() - 1]).is_err(), "a torn record");
    }
}
