//! HTTP request heads as the server reads them: parsed by `httparse`, bounded
//! in size ([`MAX_HEAD`], [`MAX_HEADERS`]); the method, path, query and the
//! token a request carries picked out; a WHEP offer's `Content-Type` and
//! `Content-Length` checked (`net::whep`). No I/O: `server::http` reads the
//! bytes under its deadline and calls [`parse_head`] on what it has so far.

use super::whep::{self, WhepError};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 << 10;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 32;
/// The cookie the page keeps the token in.
pub const COOKIE: &str = "livestream_token";

/// The methods answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// WHEP offers.
    Post,
    /// The end of a WHEP session.
    Delete,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request head we act on.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub head_only: bool,
    /// The target up to any `?` or `#`.
    pub path: String,
    /// What follows `?` in the target, up to any `#`.
    pub query: String,
    /// The token as given, and whether it came in the URL.
    pub token: Option<(String, bool)>,
    /// A POST's body: its checked length (content type checked too).
    pub body: Option<Result<usize, WhepError>>,
    /// Bytes read past the head: the start of the body.
    pub rest: Vec<u8>,
}

/// Why a request was not served, as an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub detail: String,
}

pub fn refusal(status: u16, reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        detail: detail.into(),
    }
}

/// Parses the head at the start of `buf`, the bytes read so far: `Ok(None)`
/// while it is incomplete and `buf` is under [`MAX_HEAD`]; a refusal (its
/// status said to the client) for a head that is malformed, too large, or
/// uses a method not answered.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, Refusal> {
    let buf = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() == MAX_HEAD => {
            return Err(refusal(
                431,
                "Request Header Fields Too Large",
                format!("head over {MAX_HEAD} bytes"),
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refusal(
                431,
                "Request Header Fields Too Large",
                format!("over {MAX_HEADERS} headers"),
            ))
        }
        Err(e) => return Err(refusal(400, "Bad Request", e.to_string())),
    };
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        other => {
            return Err(refusal(
                405,
                "Method Not Allowed",
                format!("method {other}"),
            ))
        }
    };
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let query = target
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let token = request_token(target, req.headers);
    let body = (method == Method::Post).then(|| {
        whep::check_content_type(req.headers).and_then(|()| whep::offer_length(req.headers))
    });
    Ok(Some(Request {
        method,
        head_only: method == Method::Head,
        path,
        query,
        token,
        body,
        rest: buf[head_len..].to_vec(),
    }))
}

/// The token a request carries: in the URL, an `Authorization` header (bearer, or
/// basic with the token as the password), or the page's cookie.
pub fn request_token(target: &str, headers: &[httparse::Header<'_>]) -> Option<(String, bool)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    if let Some(t) = query.split('&').find_map(|kv| kv.strip_prefix("token=")) {
        return Some((t.to_string(), true));
    }
    for h in headers {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("authorization") {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some((rest.trim().to_string(), false));
            }
            if scheme.eq_ignore_ascii_case("basic") {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (_user, password) = text.split_once(':')?;
                return Some((password.to_string(), false));
            }
        } else if h.name.eq_ignore_ascii_case("cookie") {
            let found = value.split(';').find_map(|c| {
                c.trim()
                    .strip_prefix(COOKIE)
                    .and_then(|v| v.strip_prefix('='))
            });
            if let Some(t) = found {
                return Some((t.to_string(), false));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(target: &str, headers: &[(&str, &str)]) -> Option<(String, bool)> {
        let headers: Vec<httparse::Header<'_>> = headers
            .iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect();
        request_token(target, &headers)
    }

    #[test]
    fn the_token_is_found_wherever_it_is_given() {
        let t = |s: &str| Some((s.to_string(), false));
        assert_eq!(token_of("/?token=abc", &[]), Some(("abc".into(), true)));
        assert_eq!(
            token_of("/s?x=1&token=abc#f", &[]),
            Some(("abc".into(), true))
        );
        assert_eq!(token_of("/", &[("Authorization", "Bearer abc")]), t("abc"));
        // "user:abc" in base64.
        assert_eq!(
            token_of("/", &[("authorization", "Basic dXNlcjphYmM=")]),
            t("abc")
        );
        assert_eq!(
            token_of("/", &[("Cookie", "a=1; livestream_token=abc")]),
            t("abc")
        );
        assert_eq!(token_of("/", &[("Cookie", "livestream_tokenx=abc")]), None);
        assert_eq!(token_of("/", &[("Authorization", "Basic !!!")]), None);
        assert_eq!(token_of("/", &[("Authorization", "Basic dXNlcg==")]), None);
        assert_eq!(token_of("/?tokens=abc", &[]), None);
    }

    #[test]
    fn heads_are_parsed_or_refused_with_a_status() {
        let r = parse_head(b"GET /stream.mjpg?mode=x#f HTTP/1.1\r\nHost: a\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.method, r.path.as_str(), r.query.as_str()),
            (Method::Get, "/stream.mjpg", "mode=x")
        );
        assert_eq!(r.rest, b"rest");
        assert!(r.body.is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap().is_none());
        assert_eq!(
            parse_head(b"PUT / HTTP/1.1\r\n\r\n").unwrap_err().status,
            405
        );
        assert_eq!(parse_head(b"GET / HT\x01\r\n\r\n").unwrap_err().status, 400);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(head.as_bytes()).unwrap_err().status, 431);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(long.as_bytes()).unwrap_err().status, 431);
        let post = parse_head(
            b"POST /whep HTTP/1.1\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(post.body, Some(Ok(5)));
    }
}
