//! `livestream bench --seal`: what encryption costs per frame, alone: one
//! `synthetic-camera` frame per size, raw (RGB24) and as the `jpeg` codec's
//! payload, sealed into records by [`SealWriter`] and opened by [`OpenReader`]
//! into a payload buffer, as `serve` and `view` do, for each cipher. In memory: no
//! socket, so this is the cipher's cost and the copies around it.

use std::io::{IoSlice, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::Kind;
use crate::config::Config;
use crate::registry;
use crate::secure::{handshake_in_memory, Cipher, Keys, Link, OpenReader, SealWriter};

use super::BenchError;

/// A Noise XX handshake in memory: the two sides' links, (server, viewer).
fn links(cipher: Cipher) -> Result<(Link, Link), BenchError> {
    let (mut i, mut r) = handshake_in_memory(cipher)?;
    let split = |noise: &mut snow::HandshakeState| Keys::split(noise, cipher);
    Ok((Link::server(split(&mut r)?), Link::viewer(split(&mut i)?)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seals and opens `payload` `runs` times; medians in ms: (seal, open).
fn measure(cipher: Cipher, payload: &[u8], runs: usize) -> Result<(f64, f64), BenchError> {
    let mut wire = Vec::with_capacity(payload.len() + payload.len() / 1000 + 4096);
    let mut out = vec![0u8; payload.len()];
    let header = [0u8; 24];
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    for run in 0..runs + 1 {
        // New keys each run, as each connection has: a nonce is never reused.
        let (server, viewer) = links(cipher)?;
        wire.clear();
        let t = Instant::now();
        let mut w = SealWriter::new(&mut wire, server.tx);
        w.write_vectored(&[IoSlice::new(&header), IoSlice::new(payload)])
            .map_err(BenchError::Records)?;
        let sealed = t.elapsed();
        let t = Instant::now();
        let mut r = OpenReader::new(&wire[..], viewer.rx);
        let mut head = [0u8; 24];
        r.read_exact(&mut head)
            .and_then(|_| r.read_exact(&mut out))
            .map_err(BenchError::Records)?;
        let opened = t.elapsed();
        if out != payload {
            return Err(BenchError::RecordsDiffer);
        }
        // The first run grows buffers and warms caches.
        if run > 0 {
            seal.push(sealed.as_secs_f64() * 1e3);
            open.push(opened.as_secs_f64() * 1e3);
        }
    }
    Ok((median(seal), median(open)))
}

pub fn run(
    base: &Config,
    sizes: &[(u32, u32)],
    runs: usize,
    stop: &AtomicBool,
) -> Result<(), BenchError> {
    println!("| payload | size | bytes | cipher | seal ms | open ms | seal + open ms |");
    println!("|---|---|---:|---|---:|---:|---:|");
    for &size in sizes {
        let frame = super::convert::photo(base, size)?;
        let backend = registry::codec("jpeg")?;
        let mut jpeg = (backend.open)(&base.backend(Kind::Codec, "jpeg"))?;
        let mut encoded = Vec::new();
        jpeg.encode(&frame, &mut encoded)?;
        for (what, payload) in [("raw rgb24", &frame.data[..]), ("jpeg", &encoded[..])] {
            for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let (s, o) = measure(cipher, payload, runs)?;
                println!(
                    "| {what} | {}x{} | {} | {cipher} | {s:.3} | {o:.3} | {:.3} |",
                    size.0,
                    size.1,
                    payload.len(),
                    s + o
                );
            }
        }
    }
    Ok(())
}
