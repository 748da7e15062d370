//! The two sides against each other over loopback: pairing, pins, refusals,
//! garbage, and records after a real handshake. Test code: each test runs a
//! server side on a thread of its own and the viewer side on the test's thread.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::trust::PairingCode;
use super::*;

/// What each side of one handshake got.
type Shake = (
    Result<(Connected, TcpStream)>,
    Result<Option<(Accepted, TcpStream)>>,
);

/// A server and a viewer, each with its own key directory, over loopback.
struct Pair {
    server: Arc<ServerAuth>,
    listener: TcpListener,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    viewer_dir: std::path::PathBuf,
}

impl Pair {
    fn new() -> Pair {
        let (s, v) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let server = Arc::new(ServerAuth::open(s.path(), "test cam").unwrap());
        Pair {
            server,
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            viewer_dir: v.path().to_path_buf(),
            _dirs: (s, v),
        }
    }

    /// One handshake; returns the viewer's and the server's results.
    fn shake(&self, viewer: &mut ViewerAuth) -> Shake {
        let addr = self.listener.local_addr().unwrap();
        let server = self.server.clone();
        let listener = self.listener.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            let (s, peer) = listener.accept().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            server.accept(&s, peer, deadline).map(|a| a.map(|a| (a, s)))
        });
        let s = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let v = viewer.connect(&s, &addr.to_string(), deadline);
        if let Ok(c) = &v {
            viewer.confirm(c, &addr.to_string());
        }
        (v.map(|c| (c, s)), t.join().unwrap())
    }
}

fn secure_err<T>(r: Result<T>) -> SecureError {
    match r {
        Err(e) => e,
        Ok(_) => panic!("succeeded"),
    }
}

#[test]
fn pairing_then_pinned_then_records_both_ways() {
    let p = Pair::new();
    let code = p.server.code();
    let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(code)).unwrap();
    let (v, s) = p.shake(&mut viewer);
    let (connected, vs) = v.unwrap();
    let (accepted, ss) = s.unwrap().unwrap();
    assert_eq!(connected.server_name, "test cam");
    assert_eq!(&connected.server_key, p.server.public_key());
    assert_eq!(p.server.paired_count(), 1);

    // Records: a large write arrives whole, in order, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut tx = SealWriter::new(&ss, accepted.link.tx);
    let n = tx
        .write_vectored(&[IoSlice::new(b"head"), IoSlice::new(&big)])
        .unwrap();
    assert_eq!(n, 4 + big.len(), "all of it, or the records would tear");
    let mut rx = OpenReader::new(&vs, connected.link.rx);
    let mut got = vec![0u8; 4 + big.len()];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got[..4], b"head");
    assert!(got[4..] == big[..]);
    let mut up = SealWriter::new(&vs, connected.link.tx);
    up.write_all(b"ping").unwrap();
    let mut down = OpenReader::new(&ss, accepted.link.rx);
    let mut b = [0u8; 4];
    down.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");

    // Later, no code: the pin and the server's list admit the viewer.
    let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
    let (v, s) = p.shake(&mut viewer);
    assert!(v.is_ok() && matches!(s, Ok(Some(_))));
}

#[test]
fn wrong_code_and_no_pairing_are_refused_with_reasons() {
    let p = Pair::new();
    let right = p.server.code();
    let wrong = PairingCode::parse(if right.to_string() == "1111-1111" {
        "2222-2222"
    } else {
        "1111-1111"
    })
    .unwrap();
    let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(wrong.clone())).unwrap();
    let (v, s) = p.shake(&mut viewer);
    assert!(matches!(secure_err(v), SecureError::WrongCode { .. }));
    assert!(matches!(s, Ok(None)));
    assert_eq!(p.server.paired_count(), 0);

    let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
    let (v, _) = p.shake(&mut viewer);
    let e = secure_err(v);
    assert!(matches!(e, SecureError::NotPaired { .. }), "{e}");
    assert!(e.to_string().contains("--pair CODE"), "{e}");

    // Enough wrong codes and the code changes.
    for _ in 1..MAX_WRONG_CODES {
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(wrong.clone())).unwrap();
        let _ = p.shake(&mut viewer);
    }
    assert!(p.server.code() != right, "the code did not change");
}

#[test]
fn a_changed_server_key_is_refused() {
    let p = Pair::new();
    let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
    let (v, _) = p.shake(&mut viewer);
    v.unwrap();
    // Another server (a new key) answers at the same address, same name.
    let other_dir = tempfile::tempdir().unwrap();
    let impostor = Pair {
        server: Arc::new(ServerAuth::open(other_dir.path(), "test cam").unwrap()),
        listener: p.listener.try_clone().unwrap(),
        viewer_dir: p.viewer_dir.clone(),
        _dirs: (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()),
    };
    let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
    let (v, _) = impostor.shake(&mut viewer);
    let e = secure_err(v);
    assert!(matches!(e, SecureError::KeyChanged { .. }), "{e}");
    assert!(e.to_string().contains("impostor"), "{e}");
}

#[test]
fn an_unpaired_viewer_with_a_pin_is_refused_by_the_server() {
    let p = Pair::new();
    let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
    p.shake(&mut viewer).0.unwrap();
    // The server forgets its viewers.
    p.server.forget_paired();
    let mut viewer = ViewerAuth::open(&p.viewer_dir, None).unwrap();
    let (v, s) = p.shake(&mut viewer);
    let e = secure_err(v);
    assert!(matches!(e, SecureError::ViewerNotPaired(_)), "{e}");
    assert!(matches!(s, Ok(None)));
}

/// Random and mutated handshakes, both ways: refused, never a panic, never
/// stuck past the deadline.
#[test]
fn garbage_handshakes_are_refused_both_ways() {
    let p = Pair::new();
    let addr = p.listener.local_addr().unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut good = vec![8u8, 0];
    good.extend_from_slice(&MAGIC);
    good.extend_from_slice(&[VERSION, 1 /* pairing */, 0, 0]);
    for round in 0..60 {
        let mut bytes = good.clone();
        bytes.extend((0..rng.usize(0..80)).map(|_| rng.u8(..)));
        if round % 2 == 0 {
            let i = rng.usize(..bytes.len());
            bytes[i] = rng.u8(..);
        }
        let server = p.server.clone();
        let listener = p.listener.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            let (s, peer) = listener.accept().unwrap();
            let deadline = Instant::now() + Duration::from_millis(300);
            server.accept(&s, peer, deadline).map(|a| a.is_some())
        });
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&bytes);
        let result = t.join().expect("the server side panicked");
        assert!(!matches!(result, Ok(true)), "round {round}: admitted");
    }
    // A fake server answering random frames to a viewer.
    let viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
    for round in 0..60 {
        let mut answer = vec![0u8; rng.usize(0..200)];
        rng.fill(&mut answer);
        if round % 3 == 0 && answer.len() > 8 {
            let len = (answer.len() - 2) as u16;
            answer[..2].copy_from_slice(&len.to_le_bytes());
            answer[2..6].copy_from_slice(&MAGIC);
            answer[6] = VERSION;
        }
        let listener = p.listener.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(&answer);
            std::thread::sleep(Duration::from_millis(20));
        });
        let s = TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        assert!(viewer.connect(&s, &addr.to_string(), deadline).is_err());
        t.join().unwrap();
    }
}

/// After a real handshake (the verdict was the server's record 0), records
/// altered, replayed, reordered or torn do not open.
#[test]
fn altered_and_replayed_records_fail() {
    let p = Pair::new();
    // A fresh handshake per case: each direction's counter is used once.
    let sealed = |bytes: fn(&[u8], usize) -> Vec<u8>| {
        let mut viewer = ViewerAuth::open(&p.viewer_dir, Some(p.server.code())).unwrap();
        let (v, s) = p.shake(&mut viewer);
        let (c, _) = v.unwrap();
        let (a, _) = s.unwrap().unwrap();
        let mut wire = Vec::new();
        let mut tx = SealWriter::new(&mut wire, a.link.tx);
        tx.write_all(b"first").unwrap();
        tx.write_all(b"second").unwrap();
        let first_len = 2 + 5 + TAG_LEN;
        let wire = bytes(&wire, first_len);
        let mut rx = OpenReader::new(&wire[..], c.link.rx);
        let mut out = Vec::new();
        rx.read_to_end(&mut out).map(|_| out)
    };
    assert_eq!(sealed(|w, _| w.to_vec()).unwrap(), b"firstsecond");
    let altered = sealed(|w, first| {
        let mut w = w.to_vec();
        w[first + 3] ^= 1;
        w
    });
    assert!(altered
        .unwrap_err()
        .to_string()
        .contains("failed authentication"));
    let replayed = sealed(|w, first| [&w[..first], &w[..first]].concat());
    assert!(replayed.is_err(), "replayed");
    let reordered = sealed(|w, first| [&w[first..], &w[..first]].concat());
    assert!(reordered.is_err(), "reordered");
    let torn = sealed(|w, _| w[..w.len() - 1].to_vec());
    assert!(torn.is_err(), "a torn record");
}
