//! The socket calls the standard library does not have: waiting on sockets
//! with `poll`, the TCP options that keep latency low, and reading a UDP
//! datagram together with the local address it was sent to. Every `libc` call
//! on a socket is here, each with its `SAFETY` line. No threads.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
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

/// Waits up to `timeout` (rounded up to a millisecond) until any of `sockets`
/// is readable; returns which are. A signal ends the wait early with none.
pub fn wait_readable<const N: usize>(
    sockets: [&dyn AsRawFd; N],
    timeout: Duration,
) -> io::Result<[bool; N]> {
    let mut fds = sockets.map(|s| libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: N valid pollfds in one array, alive for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), N as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok([false; N])
        } else {
            Err(e)
        };
    }
    Ok(fds.map(|p| p.revents != 0))
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

/// Ends a TCP connection whose data stays unacknowledged for `timeout`
/// (`TCP_USER_TIMEOUT`): a peer that vanished without a FIN (its link gone,
/// powered off) then fails the next write or poll with `ETIMEDOUT`, instead
/// of holding its thread and its place while TCP retries for minutes. An
/// idle connection (nothing unacknowledged) is not affected.
pub fn set_user_timeout(socket: &impl AsRawFd, timeout: Duration) -> io::Result<()> {
    let ms = timeout.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
    set_int_option(socket, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
}

/// From linux/tcp.h (6.16); not in the libc crate yet.
const TCP_RTO_MIN_US: libc::c_int = 45;

/// The least time TCP waits for an acknowledgement before it sends again
/// (`TCP_RTO_MIN_US`, Linux 6.16 and later; older kernels refuse it): the
/// kernel's own least, 200 ms, is made for the internet, and on a LAN, where
/// a round trip takes a millisecond, it is how long one lost resend stalls a
/// stream.
pub fn set_rto_min(socket: &impl AsRawFd, min: Duration) -> io::Result<()> {
    let us = min.as_micros().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
    set_int_option(socket, libc::IPPROTO_TCP, TCP_RTO_MIN_US, us)
}

/// What the kernel knows of a TCP connection's sending side (`TCP_INFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Smoothed round trip, µs.
    pub rtt_us: u32,
    /// The rate the most recently acknowledged data was delivered at, bytes/s
    /// (0 when the kernel does not say: before Linux 4.9, or nothing acked yet).
    pub delivery_rate: u64,
    /// That rate was measured while the sender had too little to send: the
    /// link carries at least that much, maybe more.
    pub app_limited: bool,
    /// Bytes written but not yet sent.
    pub notsent_bytes: u32,
    /// Bytes the peer acknowledged so far.
    pub bytes_acked: u64,
}

/// The kernel's `TCP_INFO` for a connected TCP socket. Fields a kernel too old
/// to fill are 0.
pub fn tcp_info(socket: &impl AsRawFd) -> io::Result<TcpInfo> {
    const LEN: usize = std::mem::size_of::<libc::tcp_info>();
    // Room for the struct, aligned for its u64 fields; the kernel writes at
    // most `LEN` bytes (it is told so) and says how many it wrote.
    let mut buf = [0u64; LEN.div_ceil(8)];
    let mut len = LEN as libc::socklen_t;
    // SAFETY: `buf` is valid and writable for `len` bytes, and `len` is a
    // valid socklen_t the kernel updates.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Every Linux since 2.6 fills at least the fields up to `tcpi_rtt`; a
    // shorter answer (qemu-user gives 4 bytes) carries nothing to go on.
    let rtt_end = std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + 4;
    if (len as usize) < rtt_end {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("TCP_INFO gave {len} bytes, fewer than the {rtt_end} of its oldest fields"),
        ));
    }
    // SAFETY: `buf` is at least `LEN` bytes of initialised memory (zeros,
    // then whatever the kernel wrote), and `tcp_info` is plain integers, for
    // which any bytes are a value; `read_unaligned` needs no alignment.
    let info: libc::tcp_info = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    let bytes: &[u8] = bytemuck_bytes(&buf);
    let filled = |end: usize| len as usize >= end;
    let delivery_end = std::mem::offset_of!(libc::tcp_info, tcpi_delivery_rate) + 8;
    Ok(TcpInfo {
        rtt_us: info.tcpi_rtt,
        delivery_rate: if filled(delivery_end) {
            info.tcpi_delivery_rate
        } else {
            0
        },
        // `tcpi_delivery_rate_app_limited` is the low bit of the byte after
        // the window scales (byte 7), which the libc struct leaves as padding.
        app_limited: filled(delivery_end) && bytes[7] & 1 != 0,
        notsent_bytes: if filled(std::mem::offset_of!(libc::tcp_info, tcpi_notsent_bytes) + 4) {
            info.tcpi_notsent_bytes
        } else {
            0
        },
        bytes_acked: if filled(std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8) {
            info.tcpi_bytes_acked
        } else {
            0
        },
    })
}

/// The bytes of a buffer of u64s.
fn bytemuck_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirement; the length is the
    // buffer's own in bytes.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), std::mem::size_of_val(buf)) }
}

/// Makes `poll` report a TCP socket readable only once `bytes` are waiting (or
/// the peer hung up) (`SO_RCVLOWAT`): how a connection waits for "more than
/// what it has peeked" without spinning.
pub fn set_rcvlowat(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = bytes.clamp(1, libc::c_int::MAX as usize) as libc::c_int;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes)
}

/// Asks for a send buffer of `bytes` (`SO_SNDBUF`; the kernel caps it at
/// `net.core.wmem_max`): a UDP socket whose buffer is full loses datagrams.
pub fn set_send_buffer(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes)
}

/// Makes the kernel say, with each datagram [`recv_from_to`] reads, which local
/// address it was sent to (`IP_PKTINFO`, `IPV6_RECVPKTINFO`): a socket bound to
/// every address must know which one its peer used.
pub fn set_recv_destination(socket: &UdpSocket) -> io::Result<()> {
    match socket.local_addr()? {
        SocketAddr::V4(_) => set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
        SocketAddr::V6(_) => {
            set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            // A dual-stack socket hears IPv4 too: ask for their addresses as well.
            let _ = set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            Ok(())
        }
    }
}

/// One datagram read without waiting, `recvmsg` with its control messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub source: SocketAddr,
    /// The local address it was sent to, when [`set_recv_destination`] asked
    /// for it and the kernel said.
    pub destination: Option<IpAddr>,
    /// It was longer than the buffer, and cut.
    pub truncated: bool,
}

/// Reads one datagram into `buf` without blocking (`WouldBlock` when none
/// waits). IPv4 addresses mapped into IPv6 come back as IPv4.
pub fn recv_from_to(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    // SAFETY (zeroed): sockaddr_storage and msghdr are plain C structs for
    // which all-zero bytes are a valid value.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64s: aligned for cmsghdr. Room for both PKTINFO messages.
    let mut control = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in msg points at a live local of the size given
    // beside it; the kernel writes at most those sizes.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let source = socket_addr(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram from no address"))?;
    let mut destination = None;
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_controllen, and each message's data is read unaligned with the size
    // of the struct its level and type say it holds, after checking its length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let data = libc::CMSG_DATA(c);
            let room = h.cmsg_len as usize - (data as usize - c as usize);
            if h.cmsg_level == libc::IPPROTO_IP
                && h.cmsg_type == libc::IP_PKTINFO
                && room >= std::mem::size_of::<libc::in_pktinfo>()
            {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                destination = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            } else if h.cmsg_level == libc::IPPROTO_IPV6
                && h.cmsg_type == libc::IPV6_PKTINFO
                && room >= std::mem::size_of::<libc::in6_pktinfo>()
            {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                destination = Some(unmapped(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Datagram {
        len: n as usize,
        source,
        destination,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) as the IPv4 address.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which
            // is smaller than the storage and needs no more alignment.
            let a: &libc::sockaddr_in = unsafe { &*(name as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(name as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(match unmapped(IpAddr::V6(ip)) {
                IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                IpAddr::V6(_) => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// A connection that sent a megabyte over loopback: the kernel says it
    /// was acknowledged, at a rate, with a round trip; a socket that is not
    /// TCP is an error, not a zeroed answer.
    #[test]
    fn tcp_info_reads_what_the_kernel_measured() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            receiver.read_exact(&mut buf).unwrap();
        });
        sender.write_all(&vec![7u8; 1 << 20]).unwrap();
        reader.join().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let info = loop {
            let info = tcp_info(&sender).unwrap();
            if info.bytes_acked >= 1 << 20 || std::time::Instant::now() > deadline {
                break info;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(info.bytes_acked >= 1 << 20, "{info:?}");
        assert!(info.delivery_rate > 0 && info.rtt_us > 0, "{info:?}");
        assert_eq!(info.notsent_bytes, 0, "{info:?}");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(tcp_info(&udp).is_err());
    }

    /// The kernel keeps the least resend wait it is given, or (before Linux
    /// 6.16) says it has no such option; a UDP socket is refused.
    #[test]
    fn rto_min_is_what_the_kernel_keeps() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        match set_rto_min(&stream, Duration::from_millis(50)) {
            Ok(()) => {
                let mut us: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: `us` and `len` are valid and writable, and `len` is
                // `us`'s size.
                let rc = unsafe {
                    libc::getsockopt(
                        stream.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        TCP_RTO_MIN_US,
                        (&mut us as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                assert_eq!(rc, 0, "{}", io::Error::last_os_error());
                // Kept in the kernel's clock ticks (4 ms at 250 Hz: 52 ms).
                assert!((50_000..=60_000).contains(&us), "{us} µs");
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT), "{e}"),
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(set_rto_min(&udp, Duration::from_millis(50)).is_err());
    }

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

    #[test]
    fn a_datagram_says_where_it_was_sent() {
        let any = UdpSocket::bind("0.0.0.0:0").unwrap();
        set_recv_destination(&any).unwrap();
        let port = any.local_addr().unwrap().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            recv_from_to(&any, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        let ready = wait_readable([&any, &client], Duration::from_secs(5)).unwrap();
        assert_eq!(ready, [true, false]);
        let d = recv_from_to(&any, &mut buf).unwrap();
        assert_eq!(d.source, client.local_addr().unwrap());
        assert_eq!(d.destination, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(d.truncated, "5 bytes into 4");
        assert_eq!(&buf, b"hell");
        let ready = wait_readable([&any], Duration::from_millis(1)).unwrap();
        assert_eq!(ready, [false]);
    }
}
