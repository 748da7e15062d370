//! The tests' HTTP client: one request per connection, written as given (hostile
//! requests included), the answer parsed with `httparse`. Runs on the calling
//! test's thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How much of a response without `Content-Length` (an MJPEG stream, which never
/// ends by itself) is read: its head and a first frame, at the test sizes.
const STREAM_SAMPLE: usize = 200_000;

/// A response: status, headers (lowercase names), body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`/stats`); panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `request` as it is and reads the response: until the server closes,
/// or for a stream (no `Content-Length`) its first [`STREAM_SAMPLE`] bytes.
pub fn exchange(addr: &str, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if raw.len() >= STREAM_SAMPLE
            && parse(&raw).is_some_and(|r| r.header("content-length").is_none())
        {
            break;
        }
    }
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "no complete response to {:?}: {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&raw)
        )
    })
}

/// The response read so far, its body as far as it came; `None` while its head
/// is incomplete.
fn parse(raw: &[u8]) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!(
            "not an HTTP response ({e}): {:?}",
            String::from_utf8_lossy(raw)
        ),
    };
    Some(Response {
        status: r.code.unwrap(),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[head_len..].to_vec(),
    })
}

/// `GET target`.
pub fn get(addr: &str, target: &str) -> Response {
    get_with(addr, target, "")
}

/// `GET target` with more header lines (each ending in `\r\n`).
pub fn get_with(addr: &str, target: &str, headers: &str) -> Response {
    exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").as_bytes(),
    )
}

/// The `/stats` of the server at `addr`.
pub fn stats(addr: &str) -> serde_json::Value {
    let response = get(addr, "/stats");
    assert_eq!(response.status, 200, "/stats");
    response.json()
}
