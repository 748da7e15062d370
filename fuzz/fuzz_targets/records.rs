//! `secure::record`: the sealed records every byte after the handshake
//! travels in. Structure-aware: the input chooses plaintext writes, a cipher,
//! the sizes the reader asks for, and damage to the sealed stream (bytes
//! flipped, the stream cut). Sealed and opened with the keys of a real Noise
//! handshake, what the reader gives is always a prefix of what was written,
//! all of it when nothing was damaged; damage ends the stream with an error,
//! never with other plaintext, never a panic. Raw bytes as records (a peer
//! without the keys) never open.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use livestream::secure::{handshake_in_memory, Cipher, Keys, Link, OpenReader, SealWriter};
use snow::HandshakeState;

#[derive(Arbitrary, Debug)]
struct Input {
    aes: bool,
    /// Plaintext writes; a length repeats the byte (records past 64 KiB are
    /// split), so large records are reached cheaply.
    writes: Vec<Write_>,
    /// The sizes the reader's buffer takes in turn (0 read as 1).
    reads: Vec<u16>,
    /// Sealed stream positions to flip (position modulo its length, xor).
    flips: Vec<(u32, u8)>,
    /// Cut the sealed stream at this position (modulo its length + 1).
    cut: Option<u32>,
    /// Bytes a peer without the keys sends.
    raw: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Write_ {
    Bytes(Vec<u8>),
    Run { byte: u8, len: u32 },
}

thread_local! {
    /// Finished handshakes, per cipher and for a stranger: a handshake costs
    /// milliseconds, the records microseconds. Their split keys are taken
    /// again for each input (fresh counters from 0).
    static STATES: RefCell<HashMap<(bool, bool), (HandshakeState, HandshakeState)>> =
        RefCell::new(HashMap::new());
}

fn link_pair(cipher: Cipher, stranger: bool) -> (Link, Link) {
    STATES.with(|states| {
        let mut states = states.borrow_mut();
        let (i, r) = states
            .entry((cipher == Cipher::AesGcm, stranger))
            .or_insert_with(|| handshake_in_memory(cipher).expect("an in-memory handshake"));
        (
            Link::viewer(Keys::split(i, cipher).unwrap()),
            Link::server(Keys::split(r, cipher).unwrap()),
        )
    })
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let cipher = if input.aes {
        Cipher::AesGcm
    } else {
        Cipher::ChaChaPoly
    };
    let (viewer, server) = link_pair(cipher, false);
    let mut written = Vec::new();
    let mut sealed = Vec::new();
    let mut writer = SealWriter::new(&mut sealed, viewer.tx);
    for w in input.writes.iter().take(16) {
        match w {
            Write_::Bytes(b) => {
                writer.write_all(b).unwrap();
                written.extend_from_slice(b);
            }
            Write_::Run { byte, len } => {
                let b = vec![*byte; (*len % 140_000) as usize];
                writer.write_all(&b).unwrap();
                written.extend_from_slice(&b);
            }
        }
    }
    writer.flush().unwrap();
    drop(writer);
    let damaged = !input.flips.is_empty() || input.cut.is_some();
    if !sealed.is_empty() {
        for &(at, x) in input.flips.iter().take(8) {
            let at = at as usize % sealed.len();
            sealed[at] ^= x.max(1);
        }
    }
    if let Some(cut) = input.cut {
        sealed.truncate(cut as usize % (sealed.len() + 1));
    }
    let mut reader = OpenReader::new(&sealed[..], server.rx);
    let mut got = Vec::new();
    let mut sizes = input.reads.iter().cycle();
    let mut buf = vec![0u8; 1 << 17];
    let ended_well = loop {
        let size = sizes
            .next()
            .map_or(buf.len(), |&s| (s as usize).clamp(1, buf.len()));
        match reader.read(&mut buf[..size]) {
            Ok(0) => break true,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                assert!(got.len() <= written.len(), "more plaintext than was sealed");
            }
            Err(_) => break false,
        }
    };
    assert_eq!(got, written[..got.len()], "plaintext that was never sealed");
    if !damaged {
        assert!(ended_well, "an undamaged stream failed to open");
        assert_eq!(
            got.len(),
            written.len(),
            "an undamaged stream came back short"
        );
    }

    // A peer without the keys.
    let (_, stranger) = link_pair(cipher, true);
    let mut reader = OpenReader::new(&input.raw[..], stranger.rx);
    loop {
        match reader.read(&mut buf[..4096]) {
            Ok(0) | Err(_) => break,
            Ok(n) => panic!("{n} bytes opened without the keys"),
        }
    }
}
