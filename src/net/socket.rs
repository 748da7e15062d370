//! The socket calls the standard library does not have: waiting on one socket
//! with `poll`, and the TCP options that keep latency low. Every `libc` call on
//! a socket is here, each with its `SAFETY` line. No threads.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Bytes to read, a connection to accept, or the peer's hang-up.
    Read,
    /// Room to write (under `TCP_NOTSENT_LOWAT`, when set), or an error the
    /// write will report.
    Write,
}

/// Waits up to `timeout` for `socket` to be ready; `Ok(false)` when it timed
/// out (or a signal interrupted the wait: callers loop with a deadline).
pub fn wait(socket: &impl AsRawFd, ready: Ready, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: match ready {
            Ready::Read => libc::POLLIN,
            Ready::Write => libc::POLLOUT,
        },
        revents: 0,
    };
    let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, alive for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on an open socket, with a pointer to an int that lives
    // across the call and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lets at most `bytes` written but not yet sent wait in the kernel
/// (`TCP_NOTSENT_LOWAT`): a socket then polls writable only below it.
pub fn set_notsent_lowat(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    set_int_option(socket, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes)
}

/// Makes `poll` report a TCP socket readable only once `bytes` are waiting (or
/// the peer hung up) (`SO_RCVLOWAT`): how a connection waits for "more than
/// what it has peeked" without spinning.
pub fn set_rcvlowat(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = bytes.clamp(1, libc::c_int::MAX as usize) as libc::c_int;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn waits_for_the_low_water_mark_then_for_the_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(wait(&listener, Ready::Read, Duration::from_secs(5)).unwrap());
        let (server, _) = listener.accept().unwrap();
        assert!(!wait(&server, Ready::Read, Duration::from_millis(10)).unwrap());
        set_rcvlowat(&server, 3).unwrap();
        client.write_all(b"ab").unwrap();
        assert!(
            !wait(&server, Ready::Read, Duration::from_millis(50)).unwrap(),
            "2 bytes are under the mark of 3"
        );
        client.write_all(b"c").unwrap();
        assert!(wait(&server, Ready::Read, Duration::from_secs(5)).unwrap());
        assert!(wait(&server, Ready::Write, Duration::from_secs(5)).unwrap());
        set_notsent_lowat(&server, 128 << 10).unwrap();
    }
}
