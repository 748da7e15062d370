//! Keys and trust, kept as small text files in the user's config directory
//! (`$XDG_CONFIG_HOME/livestream`, else `~/.config/livestream`):
//!
//! - `server.key`, `viewer.key`: this machine's X25519 key pairs (mode 0600);
//! - `paired-viewers`: on a server, the viewers that paired with it;
//! - `known-servers`: on a viewer, the servers it paired with (trust on first use).
//!
//! Files are read as untrusted input: size-capped, checked line by line, and
//! errors name the file and line.
//!
//! Also the pairing code and its policy ([`MAX_WRONG_CODES`]). Used on the
//! server's connection threads (a [`SharedPeerList`] of paired viewers, looked up
//! by every handshake) and on the viewer's calling thread (its own
//! `known-servers`, a plain [`PeerList`]).

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::suite::{params, Cipher, Role};

/// X25519 keys are 32 bytes.
pub const KEY_LEN: usize = 32;
pub type PublicKey = [u8; KEY_LEN];

/// Longest trust file read (a line is about 150 bytes: that is thousands of peers).
const MAX_FILE: u64 = 1 << 20;
/// Longest peer name kept.
pub const MAX_NAME: usize = 64;
/// Wrong pairing codes tried before the server makes a new code.
pub const MAX_WRONG_CODES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no config directory for keys: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {why}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory keys and pins live in by default.
pub fn default_dir() -> Result<PathBuf, TrustError> {
    dirs::config_dir()
        .map(|d| d.join("livestream"))
        .ok_or(TrustError::NoConfigDir)
}

/// A short, stable name for a key to show people and compare by eye: the first 8
/// bytes of its SHA-256, as four groups of hex digits.
pub fn fingerprint(key: &PublicKey) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let h = hex(&d.as_ref()[..8]);
    format!("{}-{}-{}-{}", &h[..4], &h[4..8], &h[8..12], &h[12..])
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn parse_key(s: &str) -> Option<PublicKey> {
    // (`from_str_radix` alone would take "+f" for a byte.)
    if s.len() != 2 * KEY_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// A name from the network or a file, made safe to print and store: no control
/// characters, one line, at most [`MAX_NAME`] characters.
pub fn clean_name(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NAME)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "(unnamed)".into()
    } else {
        s.into()
    }
}

/// Reads a trust file, refusing one too large to be ours.
fn read_capped(path: &Path) -> Result<Option<String>, TrustError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let len = file.metadata().map_err(io_error(path))?.len();
    if len > MAX_FILE {
        return Err(TrustError::Malformed {
            path: path.into(),
            line: 0,
            why: format!("{len} bytes, over the limit of {MAX_FILE}: not a livestream file"),
        });
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_FILE), &mut text).map_err(|e| {
        TrustError::Malformed {
            path: path.into(),
            line: 0,
            why: format!("not text: {e}"),
        }
    })?;
    Ok(Some(text))
}

/// Writes `text` to `path` through a temporary file and a rename, so a crash
/// never leaves half a file; the file is readable by its owner only.
fn write_atomic(path: &Path, text: &str) -> Result<(), TrustError> {
    let tmp = write_temporary(path, text)?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Writes `text` beside `path` under a name no other writer uses; returns it.
fn write_temporary(path: &Path, text: &str) -> Result<PathBuf, TrustError> {
    static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let n = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let mut f = open_private(&tmp, true).map_err(io_error(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_error(&tmp))?;
    Ok(tmp)
}

fn open_private(path: &Path, truncate: bool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

/// This machine's static key pair for the Noise handshakes.
#[derive(Clone)]
pub struct KeyPair {
    pub private: [u8; KEY_LEN],
    pub public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", fingerprint(&self.public))
    }
}

impl KeyPair {
    /// A new random key pair.
    pub fn generate() -> KeyPair {
        let kp = snow::Builder::new(params(Cipher::ChaChaPoly, false))
            .generate_keypair()
            .expect("X25519 key generation from the system's random source");
        KeyPair {
            private: kp.private.try_into().expect("32-byte X25519 key"),
            public: kp.public.try_into().expect("32-byte X25519 key"),
        }
    }

    /// This machine's `server.key` or `viewer.key` in `dir`, made (and logged)
    /// the first time.
    pub fn load_role(dir: &Path, role: Role) -> Result<KeyPair, TrustError> {
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

    /// Reads the key pair at `path`, or creates one there the first time.
    pub fn load_or_create(path: &Path) -> Result<(KeyPair, bool), TrustError> {
        if let Some(text) = read_capped(path)? {
            return KeyPair::parse(path, &text).map(|k| (k, false));
        }
        let kp = KeyPair::generate();
        let tmp = write_temporary(
            path,
            &format!(
                "# livestream key pair: keep it secret (anyone with it can pose as this machine)\n\
                 private {}\npublic {}\n",
                hex(&kp.private),
                hex(&kp.public)
            ),
        )?;
        // Never replace a key: when another process made one first, use that.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok((kp, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let text = read_capped(path)?.unwrap_or_default();
                KeyPair::parse(path, &text).map(|k| (k, false))
            }
            Err(e) => Err(io_error(path)(e)),
        }
    }

    /// The key pair in `text`, the contents of the file at `path` (named in
    /// errors).
    pub fn parse(path: &Path, text: &str) -> Result<KeyPair, TrustError> {
        let (mut private, mut public) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| TrustError::Malformed {
                path: path.into(),
                line: i + 1,
                why,
            };
            let (field, value) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `private HEX` or `public HEX`".into()))?;
            let key = parse_key(value.trim())
                .ok_or_else(|| bad(format!("{field}: expected 64 hex digits")))?;
            match field {
                "private" => private = Some(key),
                "public" => public = Some(key),
                other => return Err(bad(format!("unknown field {other:?}"))),
            }
        }
        match (private, public) {
            (Some(private), Some(public)) => Ok(KeyPair { private, public }),
            _ => Err(TrustError::Malformed {
                path: path.into(),
                line: 0,
                why: "needs a `private` and a `public` line; delete the file to make a new key \
                      (paired peers will then need to pair again)"
                    .into(),
            }),
        }
    }
}

/// One trusted peer: its key, where it was last seen, and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub key: PublicKey,
    pub address: String,
    pub name: String,
}

/// A file of trusted peers: one per line, `KEY ADDRESS NAME`.
#[derive(Debug)]
pub struct PeerList {
    path: PathBuf,
    pub peers: Vec<Peer>,
}

impl PeerList {
    pub fn load(path: &Path) -> Result<PeerList, TrustError> {
        PeerList::parse(path, &read_capped(path)?.unwrap_or_default())
    }

    /// The list in `text`, the contents of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<PeerList, TrustError> {
        let mut peers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| TrustError::Malformed {
                path: path.into(),
                line: i + 1,
                why: why.into(),
            };
            let mut parts = line.splitn(3, ' ');
            let key = parts
                .next()
                .and_then(parse_key)
                .ok_or_else(|| bad("expected a key of 64 hex digits first"))?;
            let address = parts
                .next()
                .ok_or_else(|| bad("expected `KEY ADDRESS NAME`"))?;
            let name = parts.next().unwrap_or("");
            peers.push(Peer {
                key,
                address: address.into(),
                name: clean_name(name.as_bytes()),
            });
        }
        Ok(PeerList {
            path: path.into(),
            peers,
        })
    }

    pub fn find_key(&self, key: &PublicKey) -> Option<&Peer> {
        self.peers.iter().find(|p| &p.key == key)
    }

    /// Adds `peer`, replacing entries for the same key, and (when `replace_place`)
    /// entries with the same name or address: a re-paired server whose key
    /// changed has one entry, not two. Then writes the file.
    pub fn add(&mut self, peer: Peer, replace_place: bool) -> Result<(), TrustError> {
        self.insert(peer, replace_place);
        write_atomic(&self.path, &self.text())
    }

    /// [`PeerList::add`] in memory only.
    fn insert(&mut self, peer: Peer, replace_place: bool) {
        self.peers.retain(|p| {
            p.key != peer.key
                && !(replace_place && (p.name == peer.name || p.address == peer.address))
        });
        self.peers.push(peer);
    }

    /// The file's text for the peers as they are now.
    pub fn text(&self) -> String {
        let mut text =
            String::from("# livestream: trusted peers (KEY ADDRESS NAME), one per line\n");
        for p in &self.peers {
            let address: String = p
                .address
                .chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect();
            text.push_str(&format!("{} {} {}\n", hex(&p.key), address, p.name));
        }
        text
    }
}

/// A peer list that connection threads share (the server's paired viewers):
/// handshakes look keys up while a pairing adds one and writes the file.
///
/// Two locks, so that no lookup ever waits for the disk. `state` is the lookup
/// lock: held only to read or change the list in memory and to render the
/// file's text, never across a file write. `written` is the write lock: held
/// across the write, by writers only. Each change takes the next generation
/// number under `state` and renders its text there, so the text of generation
/// `g` holds every change up to `g`; a writer then writes only if no later
/// generation is on disk yet. So writes never go backwards, and of two racing
/// pairings the one written last (or skipped because a later text was already
/// written) is always in the file: neither is lost. A generation whose write
/// failed is written by the next change (its text holds this one too).
pub struct SharedPeerList {
    state: Mutex<Generations>,
    written: Mutex<u64>,
    path: PathBuf,
}

struct Generations {
    list: PeerList,
    /// Changes made since load.
    generation: u64,
}

/// A poisoned lock only means another thread panicked holding it; the list is
/// still whole (every change to it is one `retain` and one `push`).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedPeerList {
    pub fn new(list: PeerList) -> SharedPeerList {
        SharedPeerList {
            path: list.path.clone(),
            state: Mutex::new(Generations {
                list,
                generation: 0,
            }),
            written: Mutex::new(0),
        }
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        lock(&self.state).list.find_key(key).is_some()
    }

    pub fn len(&self) -> usize {
        lock(&self.state).list.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `peer`, replacing an entry with its key (viewers are told apart by
    /// key only), and writes the file outside the lookup lock. The peer is in
    /// the list, and found by lookups, even if the write fails.
    pub fn add(&self, peer: Peer) -> Result<(), TrustError> {
        let (text, generation) = {
            let mut state = lock(&self.state);
            state.list.insert(peer, false);
            state.generation += 1;
            (state.list.text(), state.generation)
        };
        let mut written = lock(&self.written);
        if *written >= generation {
            // A later text, which holds this change, is on disk already.
            return Ok(());
        }
        write_atomic(&self.path, &text)?;
        *written = generation;
        Ok(())
    }

    /// Forgets every peer in memory (the file is left as it is): for tests of
    /// a server that no longer knows a viewer.
    #[cfg(test)]
    pub(crate) fn forget_all(&self) {
        lock(&self.state).list.peers.clear();
    }
}

/// A pairing code: 8 random digits, shown as `1234-5678`.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl PairingCode {
    pub fn generate() -> PairingCode {
        let mut n = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
            .expect("the system's random source");
        // 64 random bits modulo 10^8: the bias is under 10^-11.
        PairingCode(format!("{:08}", u64::from_le_bytes(n) % 100_000_000))
    }

    /// Reads a code as a person types it: digits, with any dashes or spaces.
    pub fn parse(s: &str) -> Result<PairingCode, BadPairingCode> {
        let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadPairingCode(s.chars().take(64).collect()));
        }
        Ok(PairingCode(digits))
    }

    pub fn digits(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// What a person typed that is not a pairing code (its first 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "pairing code {0:?}: expected 8 digits like 1234-5678 (the code `livestream serve` printed)"
)]
pub struct BadPairingCode(pub String);

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", &self.0[..4], &self.0[4..])
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_bad_ones_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/server.key");
        let (a, created) = KeyPair::load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = KeyPair::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!((a.private, a.public), (b.private, b.public));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");

        std::fs::write(&path, "private 12\npublic zz\n").unwrap();
        let e = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(
            e.contains("server.key:1: private: expected 64 hex digits"),
            "{e}"
        );
        std::fs::write(&path, vec![b'#'; MAX_FILE as usize + 1]).unwrap();
        let e = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("over the limit"), "{e}");
    }

    /// Found by the `trust_files` fuzz target: a `+` in a key's hex was
    /// read as a byte (`u8::from_str_radix("+f", 16)` is 15), so a key that
    /// is not 64 hex digits loaded.
    #[test]
    fn keys_are_hex_digits_only() {
        let good = "0f".repeat(32);
        assert_eq!(parse_key(&good), Some([0x0f; KEY_LEN]));
        assert_eq!(parse_key(&good.to_uppercase()), Some([0x0f; KEY_LEN]));
        let plus = format!("+f{}", &good[2..]);
        assert_eq!(parse_key(&plus), None);
        let text = format!("private {plus}\npublic {good}\n");
        let e = KeyPair::parse(Path::new("server.key"), &text).unwrap_err();
        assert!(e.to_string().contains("server.key:1: private"), "{e}");
        let peers = format!("{plus} 10.0.0.2:7878 pi\n");
        assert!(PeerList::parse(Path::new("peers"), &peers).is_err());
    }

    #[test]
    fn peer_lists_replace_by_key_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known-servers");
        let mut l = PeerList::load(&path).unwrap();
        assert!(l.peers.is_empty());
        let p = |k: u8, addr: &str, name: &str| Peer {
            key: [k; 32],
            address: addr.into(),
            name: name.into(),
        };
        l.add(p(1, "10.0.0.1:7878", "kitchen cam"), true).unwrap();
        l.add(p(2, "10.0.0.2:7878", "porch"), true).unwrap();
        // The kitchen camera was reset: a new key for the same name replaces it.
        l.add(p(3, "10.0.0.9:7878", "kitchen cam"), true).unwrap();
        let l = PeerList::load(&path).unwrap();
        assert_eq!(
            l.peers,
            vec![
                p(2, "10.0.0.2:7878", "porch"),
                p(3, "10.0.0.9:7878", "kitchen cam")
            ]
        );

        std::fs::write(&path, "# c\n\nnothex 1.2.3.4:5 x\n").unwrap();
        let e = PeerList::load(&path).unwrap_err().to_string();
        assert!(e.contains("known-servers:3: expected a key"), "{e}");
    }

    /// Pairings racing from many threads: every one of them ends up in the file,
    /// and lookups see each as soon as its `add` returned.
    #[test]
    fn racing_additions_to_a_shared_list_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired-viewers");
        let shared = SharedPeerList::new(PeerList::load(&path).unwrap());
        assert!(shared.is_empty());
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let shared = &shared;
                s.spawn(move || {
                    for i in 0..10u8 {
                        let key = [t * 10 + i + 1; 32];
                        shared
                            .add(Peer {
                                key,
                                address: format!("10.0.{t}.{i}"),
                                name: format!("viewer {t}-{i}"),
                            })
                            .unwrap();
                        assert!(shared.contains(&key), "not found right after add");
                    }
                });
            }
        });
        assert_eq!(shared.len(), 80);
        let on_disk = PeerList::load(&path).unwrap();
        assert_eq!(on_disk.peers.len(), 80, "a pairing was lost on disk");
        for k in 1..=80u8 {
            assert!(on_disk.find_key(&[k; 32]).is_some(), "key {k} missing");
        }
        // The same key again replaces its entry.
        shared
            .add(Peer {
                key: [1; 32],
                address: "10.9.9.9".into(),
                name: "moved".into(),
            })
            .unwrap();
        let on_disk = PeerList::load(&path).unwrap();
        assert_eq!(on_disk.peers.len(), 80);
        assert_eq!(on_disk.find_key(&[1; 32]).unwrap().name, "moved");
    }

    #[test]
    fn codes_and_names() {
        let c = PairingCode::generate();
        assert_eq!(c.to_string().len(), 9);
        assert_eq!(PairingCode::parse(&c.to_string()).unwrap(), c);
        assert_eq!(
            PairingCode::parse("1234 5678").unwrap().to_string(),
            "1234-5678"
        );
        assert!(PairingCode::parse("1234-567").is_err());
        assert!(PairingCode::parse("1234-567x").is_err());
        assert_eq!(clean_name(b"cam\n\x1b[31mred"), "cam  [31mred");
        assert_eq!(clean_name(b"  "), "(unnamed)");
        assert_eq!(clean_name(&[b'a'; 200]).len(), MAX_NAME);
        let fp = fingerprint(&[7; 32]);
        assert_eq!(fp.len(), 19);
        assert_ne!(fp, fingerprint(&[8; 32]));
    }
}
