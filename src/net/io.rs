//! Blocking socket and reader helpers shared by the native protocol, the secure
//! layer and HTTP: a reader with a deadline for a whole message, `write_all` for
//! several buffers, and the two read helpers every message parser needs (the first
//! bytes of a message, and skipping a bounded block).
//!
//! No threads of its own: each function runs on the connection thread that calls
//! it. This is the bottom of `net/`: it imports nothing from the crate.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A reader over a TCP stream that gives up at a deadline for the whole message,
/// not per `read` call: a peer that sends a byte a second cannot hold a
/// connection open forever. Past the deadline a read fails with
/// [`io::ErrorKind::TimedOut`] (or `WouldBlock`, the kernel's word for the same).
pub struct DeadlineReader<'a> {
    pub stream: &'a TcpStream,
    pub deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        (&*self.stream).read(buf)
    }
}

/// `write_all` for several buffers at once (one `writev` when the socket takes it all).
pub fn write_all_vectored(w: &mut impl Write, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `read_exact` for the first bytes of a message, telling a clean close from a
/// torn message: `Ok(false)` when the peer closed before sending any byte,
/// [`io::ErrorKind::UnexpectedEof`] when it closed after some.
pub fn read_first(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads `len` bytes (already checked against a limit by the caller) and drops
/// them, without a buffer of that size; [`io::ErrorKind::UnexpectedEof`] if the
/// stream ends first.
pub fn skip(r: &mut impl Read, len: usize) -> io::Result<()> {
    let copied = io::copy(&mut r.take(len as u64), &mut io::sink())?;
    if copied != len as u64 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands over one byte per read, as a slow peer does.
    struct Dribble<'a>(&'a [u8]);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_first_tells_a_clean_close_from_a_torn_message() {
        let mut b = [0u8; 4];
        assert!(read_first(&mut Dribble(b"abcdef"), &mut b).unwrap());
        assert_eq!(&b, b"abcd");
        assert!(
            !read_first(&mut Dribble(b""), &mut b).unwrap(),
            "clean close"
        );
        let e = read_first(&mut Dribble(b"ab"), &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "torn: {e}");
    }

    #[test]
    fn skip_drops_exactly_len_bytes_or_reports_the_short_stream() {
        let mut r = &b"0123456789"[..];
        skip(&mut r, 4).unwrap();
        assert_eq!(r, b"456789");
        let e = skip(&mut r, 7).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn write_all_vectored_writes_every_buffer_through_short_writes() {
        /// Takes at most 3 bytes per call, from the first non-empty buffer.
        struct Narrow(Vec<u8>);
        impl Write for Narrow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Narrow(Vec::new());
        write_all_vectored(
            &mut w,
            &mut [
                IoSlice::new(b"head"),
                IoSlice::new(b""),
                IoSlice::new(b"payload"),
            ],
        )
        .unwrap();
        assert_eq!(w.0, b"headpayload");

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_all_vectored(&mut Full, &mut [IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_deadline_reader_past_its_deadline_times_out_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let start = Instant::now();
        let mut r = DeadlineReader {
            stream: &stream,
            deadline: start + Duration::from_millis(50),
        };
        let mut b = [0u8; 1];
        let e = r.read(&mut b).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e}"
        );
        assert!(start.elapsed() < Duration::from_secs(5), "waited past it");
        let e = r.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "already past: {e}");
    }
}
