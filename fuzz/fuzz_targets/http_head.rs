//! `net::http::parse_head`, on what any HTTP client sends the server's port,
//! fed as it arrives: in two pieces, the first cut where the input says. Never
//! panics; incomplete is said only under the size bound; the same bytes give
//! the same answer whether they came whole or cut; what parses has a path
//! without `?` or `#`, a body length within the WHEP limit, and the bytes
//! after the head are exactly what followed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::net::http::{parse_head, Method, MAX_HEAD};
use livestream::net::whep::MAX_OFFER;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = parse_head(bytes);
    let cut = (cut as usize * bytes.len() / 255).min(bytes.len());
    // The server calls again with more bytes until it has an answer: a head
    // complete in the first piece is the same head.
    if let Ok(Some(first)) = parse_head(&bytes[..cut]) {
        let Ok(Some(all)) = &whole else {
            panic!("complete in a prefix, not in the whole: {whole:?}");
        };
        assert_eq!(
            (first.method, &first.path, &first.query),
            (all.method, &all.path, &all.query)
        );
        assert_eq!(first.token, all.token);
    }
    match whole {
        Ok(None) => assert!(bytes.len() < MAX_HEAD),
        Ok(Some(r)) => {
            assert!(!r.path.contains(['?', '#']));
            assert!(!r.query.contains('#'));
            assert_eq!(r.head_only, r.method == Method::Head);
            assert_eq!(r.body.is_some(), r.method == Method::Post);
            if let Some(Ok(n)) = r.body {
                assert!(n <= MAX_OFFER);
            }
            let head_len = bytes.len().min(MAX_HEAD) - r.rest.len();
            assert_eq!(&bytes[head_len..bytes.len().min(MAX_HEAD)], &r.rest[..]);
            assert!(bytes[..head_len].ends_with(b"\n"));
        }
        Err(refusal) => assert!(matches!(refusal.status, 400 | 405 | 431)),
    }
});
