//! Records: after the handshake, everything travels as sealed records, each a
//! `u16` little-endian length and a Noise transport message (at most 65535 bytes,
//! the last 16 the tag). [`Link`] owns the two directions' keys and nonce
//! counters; [`SealWriter`] and [`OpenReader`] seal and open whole streams of
//! records in place, without allocating per frame; [`Tx`] and [`Rx`] let a
//! connection be sealed or plaintext (`auth = "none"`) behind one type.
//!
//! Threads: on the server, a connection's sender thread owns its `SealWriter`
//! and its `viewer-rx` thread its `OpenReader`; on the viewer, the calling thread
//! writes (pings, reports) and `net-reader` reads. Each half is owned by one
//! thread: no locks.

use std::io::{self, IoSlice, Read, Write};

use super::suite::{Aead, Keys, MAX_PLAINTEXT, MAX_RECORD, TAG_LEN};

/// Both directions of one side of a secure connection: `tx` seals what this side
/// sends, `rx` opens what it receives.
///
/// The nonce rule lives here and nowhere else. Each direction numbers its
/// records from 0, as Noise's transport does, and every record takes the next
/// number, the handshake's verdict included: the server's verdict is its record 0,
/// so its stream (its hello, then the packets) starts at 1; the viewer's stream
/// starts at 0. The handshake seals and opens the verdict through the same
/// `Link` it then hands over, so nobody else counts. A record dropped, reordered
/// or replayed therefore meets the wrong nonce and does not open.
///
/// Each half is moved into the one writer or reader that uses it
/// ([`SealWriter::new`], [`OpenReader::new`]): a nonce is never used twice.
pub struct Link {
    pub tx: Sealer,
    pub rx: Opener,
}

impl Link {
    /// The server's side: it answers the handshake (Noise's responder), so it
    /// seals with the responder-to-initiator key.
    pub fn server(keys: Keys) -> Link {
        Link::new(
            keys.responder_to_initiator,
            keys.initiator_to_responder,
            &keys,
        )
    }

    /// The viewer's side: it starts the handshake (Noise's initiator).
    pub fn viewer(keys: Keys) -> Link {
        Link::new(
            keys.initiator_to_responder,
            keys.responder_to_initiator,
            &keys,
        )
    }

    fn new(send: [u8; 32], recv: [u8; 32], keys: &Keys) -> Link {
        Link {
            tx: Sealer {
                aead: Aead::new(keys.cipher, &send),
                next: 0,
            },
            rx: Opener {
                aead: Aead::new(keys.cipher, &recv),
                next: 0,
            },
        }
    }
}

/// Noise reserves the last nonce: a direction ends one short of it.
const NONCE_RESERVED: u64 = u64::MAX;

fn exhausted() -> io::Error {
    io::Error::other("record counter exhausted: the connection must end")
}

/// The sending direction: a key and the nonce of the next record it seals.
pub struct Sealer {
    aead: Aead,
    next: u64,
}

impl Sealer {
    /// Seals `buf[..len]` in place as the next record and puts the tag after it;
    /// returns the record's length. `buf` must have room for the tag.
    pub fn seal(&mut self, buf: &mut [u8], len: usize) -> io::Result<usize> {
        let nonce = self.next;
        if nonce == NONCE_RESERVED {
            return Err(exhausted());
        }
        let n = self.aead.seal(nonce, buf, len)?;
        self.next = nonce + 1;
        Ok(n)
    }
}

/// The receiving direction: a key and the nonce of the next record it opens.
pub struct Opener {
    aead: Aead,
    next: u64,
}

impl Opener {
    /// Opens the next record in place; returns the plaintext's length (at the
    /// start of `record`). The nonce is used up even when the record does not
    /// open: the connection is over then anyway.
    pub fn open(&mut self, record: &mut [u8]) -> io::Result<usize> {
        let nonce = self.next;
        if nonce == NONCE_RESERVED {
            return Err(exhausted());
        }
        self.next = nonce + 1;
        self.aead.open(nonce, record)
    }
}

/// Writes plaintext as sealed records. Small pieces are gathered into one record;
/// large ones are copied from the caller's buffer into the output and sealed
/// there (the one copy: the caller's frame is shared by every viewer). Nothing is
/// allocated after `new`.
pub struct SealWriter<W: Write> {
    inner: W,
    sealer: Sealer,
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
    /// Seals with `sealer` (a [`Link`]'s `tx`), whose counter goes on from where
    /// it is.
    pub fn new(inner: W, sealer: Sealer) -> SealWriter<W> {
        SealWriter {
            inner,
            sealer,
            stage: vec![0; MAX_PLAINTEXT].into_boxed_slice(),
            staged: 0,
            out: vec![0; OUT_RECORDS * (2 + MAX_RECORD)].into_boxed_slice(),
            filled: 0,
        }
    }

    fn seal(
        sealer: &mut Sealer,
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
        let n = sealer.seal(&mut out[at..], plain.len())?;
        out[*filled..at].copy_from_slice(&(n as u16).to_le_bytes());
        *filled = at + n;
        Ok(())
    }

    fn seal_stage(&mut self) -> io::Result<()> {
        if self.staged > 0 {
            Self::seal(
                &mut self.sealer,
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
                        &mut self.sealer,
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
    opener: Opener,
    /// Bytes read from `inner`, not yet used: `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// The plaintext of a record opened in `input`, not yet read:
    /// `input[plain_at..plain_end]` (then `start` is past that record).
    plain_at: usize,
    plain_end: usize,
}

impl<R: Read> OpenReader<R> {
    /// Opens with `opener` (a [`Link`]'s `rx`), whose counter goes on from where
    /// it is.
    pub fn new(inner: R, opener: Opener) -> OpenReader<R> {
        OpenReader {
            inner,
            opener,
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
            opener: self.opener,
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
                self.inner.read_exact(&mut buf[have..len])?;
                let n = self.opener.open(&mut buf[..len])?;
                if n > 0 {
                    return Ok(n);
                }
            } else {
                self.fill(2 + len, false)?;
                let at = self.start + 2;
                let n = self.opener.open(&mut self.input[at..at + len])?;
                self.start = at + len;
                (self.plain_at, self.plain_end) = (at, at + n);
            }
        }
    }
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
    use crate::secure::suite::{handshake_in_memory, Cipher};

    /// The two sides' links of one handshake made in memory: (viewer, server).
    fn links(cipher: Cipher) -> (Link, Link) {
        let (mut i, mut r) = handshake_in_memory(cipher).unwrap();
        (
            Link::viewer(Keys::split(&mut i, cipher).unwrap()),
            Link::server(Keys::split(&mut r, cipher).unwrap()),
        )
    }

    /// Our records are Noise transport messages: snow's own transport opens what
    /// we seal and the other way round, with both ciphers.
    #[test]
    fn records_are_noise_transport_messages() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            let (mut i, mut r) = handshake_in_memory(cipher).unwrap();
            let ours = Link::viewer(Keys::split(&mut i, cipher).unwrap());
            let theirs = Link::server(Keys::split(&mut r, cipher).unwrap());
            let snow_i = i.into_stateless_transport_mode().unwrap();
            let snow_r = r.into_stateless_transport_mode().unwrap();
            for nonce in [0u64, 1, 300, 1 << 40] {
                let text = format!("frame {nonce}");
                let mut buf = [0u8; 256];
                buf[..text.len()].copy_from_slice(text.as_bytes());
                let n = ours.tx.aead.seal(nonce, &mut buf, text.len()).unwrap();
                let mut plain = [0u8; 256];
                let m = snow_r.read_message(nonce, &buf[..n], &mut plain).unwrap();
                assert_eq!(&plain[..m], text.as_bytes(), "{cipher} seal → snow");

                let n = snow_r
                    .write_message(nonce, text.as_bytes(), &mut buf)
                    .unwrap();
                let mut copy = buf;
                assert!(
                    ours.rx.aead.open(nonce + 1, &mut copy[..n]).is_err(),
                    "{cipher}: opened under the wrong nonce"
                );
                let m = ours.rx.aead.open(nonce, &mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], text.as_bytes(), "{cipher} snow → open");

                // The other direction, the responder's keys against snow's initiator.
                buf[..text.len()].copy_from_slice(text.as_bytes());
                let n = theirs.tx.aead.seal(nonce, &mut buf, text.len()).unwrap();
                let m = snow_i.read_message(nonce, &buf[..n], &mut plain).unwrap();
                assert_eq!(
                    &plain[..m],
                    text.as_bytes(),
                    "{cipher} responder seal → snow"
                );
                let n = snow_i
                    .write_message(nonce, text.as_bytes(), &mut buf)
                    .unwrap();
                let m = theirs.rx.aead.open(nonce, &mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], text.as_bytes(), "{cipher} snow → responder open");
            }
        }
    }

    /// The nonce rule: each direction counts from 0, one per record, the
    /// verdict included; the server's stream then goes on from 1 in the writer.
    #[test]
    fn a_link_counts_each_direction_from_zero_through_the_verdict() {
        let (mut viewer, mut server) = links(Cipher::ChaChaPoly);
        let mut verdict = [0u8; 64];
        verdict[0] = 7;
        let n = server.tx.seal(&mut verdict, 1).unwrap();
        assert_eq!(server.tx.next, 1);
        assert_eq!(viewer.rx.open(&mut verdict[..n]).unwrap(), 1);
        assert_eq!(viewer.rx.next, 1);
        // A second seal of the same text is a different record (the next nonce).
        let mut again = [0u8; 64];
        again[0] = 7;
        let m = server.tx.seal(&mut again, 1).unwrap();
        assert_ne!(verdict[..n], again[..m], "a nonce was used twice");

        // The streams: the server's goes on from 2 here, the viewer's from 0.
        let mut wire = Vec::new();
        SealWriter::new(&mut wire, server.tx)
            .write_all(b"hello")
            .unwrap();
        let mut r = OpenReader::new(&wire[..], viewer.rx);
        let mut b = [0u8; 5];
        assert!(
            r.read_exact(&mut b).is_err(),
            "the viewer skipped record 1, so record 2 must not open"
        );
        let mut up = Vec::new();
        SealWriter::new(&mut up, viewer.tx)
            .write_all(b"ping")
            .unwrap();
        let mut r = OpenReader::new(&up[..], server.rx);
        let mut b = [0u8; 4];
        r.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    }

    #[test]
    fn a_direction_stops_before_the_reserved_nonce() {
        let (mut viewer, mut server) = links(Cipher::AesGcm);
        server.tx.next = u64::MAX - 1;
        let mut buf = [0u8; 32];
        let n = server.tx.seal(&mut buf, 4).unwrap();
        assert!(server.tx.seal(&mut buf, 4).is_err(), "sealed with 2^64 - 1");
        viewer.rx.next = u64::MAX - 1;
        assert_eq!(viewer.rx.open(&mut buf[..n]).unwrap(), 4, "the last nonce");
        let e = viewer.rx.open(&mut buf[..n]).unwrap_err();
        assert!(e.to_string().contains("exhausted"), "{e}");
    }

    /// Reads of every size, small (through the input buffer) and large (opened
    /// in place in the caller's buffer), in any mix, give back exactly what was
    /// written, whatever the inner reader hands over at a time.
    #[test]
    fn records_open_whatever_the_read_sizes() {
        let (viewer, server) = links(Cipher::AesGcm);
        let mut rng = fastrand::Rng::with_seed(5);
        let sent: Vec<u8> = (0..1_500_000).map(|_| rng.u8(..)).collect();
        let mut wire = Vec::new();
        let mut w = SealWriter::new(&mut wire, viewer.tx);
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
        let mut r = OpenReader::new(Trickle(&wire, fastrand::Rng::with_seed(9)), server.rx);
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
    fn a_record_shorter_than_its_tag_is_refused() {
        let (viewer, _) = links(Cipher::ChaChaPoly);
        let wire = [5u8, 0, 1, 2, 3, 4, 5];
        let mut r = OpenReader::new(&wire[..], viewer.rx);
        let e = r.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("shorter than its tag"), "{e}");
    }
}
