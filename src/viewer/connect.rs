//! Connecting to a server: TCP to each address the name resolves to, the
//! secure handshake (unless `auth = "none"`), then the protocol's hellos inside
//! it. Runs on the calling thread; the handshake is bounded in time.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::media::clock::{self, ClockSync};
use crate::media::frame::Limits;
use crate::net::io::DeadlineReader;
use crate::net::protocol::{self, ClientHello, ProtocolError, ServerHello};
use crate::secure::{OpenReader, Rx, SealWriter, Tx, ViewerAuth};

use super::Lost;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection past its handshake: the socket, and its two halves (sealed
/// with pairing, plaintext with `auth = "none"`).
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) tx: Tx<TcpStream>,
    pub(crate) rx: Rx<TcpStream>,
    pub(crate) hello: ServerHello,
    /// The handshake as a first clock sample (the server stamped its hello
    /// once: t2 = t3).
    pub(crate) clock: ClockSync,
}

/// Connects and shakes hands, trying each address `address` resolves to.
/// `renditions`: the viewer takes smaller renditions of the stream (it
/// decodes and scales them; a sink that keeps the payload does not).
pub(crate) fn connect(
    address: &str,
    limits: &Limits,
    mut auth: Option<&mut ViewerAuth>,
    renditions: bool,
) -> Result<Connection, Lost> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| ProtocolError::Invalid {
            what: "address",
            why: format!("{address}: {e}"),
        })?
        .collect();
    let mut last = ProtocolError::Invalid {
        what: "address",
        why: format!("{address} resolves to nothing"),
    };
    for addr in addrs {
        let stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        return handshake(stream, address, limits, auth.as_deref_mut(), renditions);
    }
    Err(last.into())
}

/// The hellos, sealed or plain, on a connected socket.
fn handshake(
    stream: TcpStream,
    address: &str,
    limits: &Limits,
    auth: Option<&mut ViewerAuth>,
    renditions: bool,
) -> Result<Connection, Lost> {
    stream.set_nodelay(true).map_err(ProtocolError::from)?;
    stream
        .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(ProtocolError::from)?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let hello = ClientHello {
        version: protocol::VERSION,
        renditions,
    };
    let (hello, sent_us, tx, rx) = match auth {
        Some(auth) => sealed(&stream, address, limits, auth, hello, deadline)?,
        None => plain(&stream, limits, hello, deadline)?,
    };
    let received_us = clock::now_us();
    let mut clock = ClockSync::default();
    clock.add(
        sent_us,
        hello.server_time_us,
        hello.server_time_us,
        received_us,
    );
    Ok(Connection {
        stream,
        tx,
        rx,
        hello,
        clock,
    })
}

type Hellos = (ServerHello, u64, Tx<TcpStream>, Rx<TcpStream>);

fn sealed(
    stream: &TcpStream,
    address: &str,
    limits: &Limits,
    auth: &mut ViewerAuth,
    hello: ClientHello,
    deadline: Instant,
) -> Result<Hellos, Lost> {
    let secured = auth.connect(stream, address, deadline)?;
    // The server proved its key (its verdict opened): remember it now, even if
    // it turns out to be busy.
    auth.confirm(&secured, address);
    let link = secured.link;
    let mut tx = Tx::Sealed(SealWriter::new(
        stream.try_clone().map_err(ProtocolError::from)?,
        link.tx,
    ));
    let sent_us = clock::now_us();
    hello.write(&mut tx).map_err(ProtocolError::from)?;
    let mut reader = OpenReader::new(DeadlineReader { stream, deadline }, link.rx);
    let hello = ServerHello::read(&mut reader, limits)?;
    let rx = Rx::Opened(reader.with_inner(stream.try_clone().map_err(ProtocolError::from)?));
    Ok((hello, sent_us, tx, rx))
}

fn plain(
    stream: &TcpStream,
    limits: &Limits,
    hello: ClientHello,
    deadline: Instant,
) -> Result<Hellos, Lost> {
    let sent_us = clock::now_us();
    hello.write(&mut &*stream).map_err(ProtocolError::from)?;
    let hello = ServerHello::read(&mut DeadlineReader { stream, deadline }, limits)?;
    let clone = || stream.try_clone().map_err(ProtocolError::from);
    let rx = Rx::Plain(std::io::BufReader::with_capacity(64 << 10, clone()?));
    Ok((hello, sent_us, Tx::Plain(clone()?), rx))
}
