//! Random and mutated input for every parser of network bytes: an error or a
//! valid value, never a panic, never an allocation past the limits. Test code:
//! runs on the test harness's thread.

use super::*;
use crate::media::frame::{FrameInfo, Limits, PixelFormat};

fn mutate(rng: &mut fastrand::Rng, good: &[u8]) -> Vec<u8> {
    match rng.u8(..4) {
        0 => (0..rng.usize(..200)).map(|_| rng.u8(..)).collect(),
        1 => good[..rng.usize(..=good.len())].to_vec(),
        _ => {
            let mut b = good.to_vec();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = rng.u8(..);
            }
            b
        }
    }
}

#[test]
fn parsers_survive_garbage() {
    let mut rng = fastrand::Rng::with_seed(7);
    let limits = Limits::default();
    let mut hello = Vec::new();
    ServerHello {
        status: Status::Ok,
        codec: "lz4".into(),
        frame: FrameInfo::packed(PixelFormat::I420, 64, 48).unwrap(),
        fps: 30.0,
        max_payload: 5000,
        server_time_us: 1,
        message: "x".into(),
    }
    .write(&mut hello)
    .unwrap();
    let mut client = Vec::new();
    ClientHello {
        version: 1,
        renditions: true,
    }
    .write(&mut client)
    .unwrap();
    let mut packets = Vec::new();
    let h = PacketHeader {
        kind: PACKET_FRAME,
        flags: 0,
        len: 100,
        seq: 1,
        capture_us: 2,
    };
    write_packet(&mut packets, &h, &[9; 100]).unwrap();
    packets.extend_from_slice(&timing(1, 2, 3));
    packets.extend_from_slice(&pong(1, 2, 3, 4));
    packets.extend_from_slice(&link(8_000_000, true, 1200));
    packets.extend_from_slice(
        &crate::net::protocol::Rendition {
            width: 32,
            height: 24,
            bits_per_second: 300_000,
            index: 1,
            count: 2,
        }
        .packet(),
    );
    write_end(&mut packets, "done", true).unwrap();
    let mut upstream = Vec::new();
    write_ping(&mut upstream, 1, 2).unwrap();
    write_report(&mut upstream, &Report::default()).unwrap();
    let mut payload = Vec::new();
    for _ in 0..20_000 {
        if let Ok(h) = ServerHello::read(&mut &mutate(&mut rng, &hello)[..], &limits) {
            assert!(h.frame.validate(&limits).is_ok());
            assert!(h.codec.len() <= MAX_CODEC_NAME && h.message.len() <= MAX_MESSAGE);
        }
        let _ = ClientHello::read(&mut &mutate(&mut rng, &client)[..]);
        let up = mutate(&mut rng, &upstream);
        let mut r = &up[..];
        while read_upstream(&mut r).is_ok() {}
        let bytes = mutate(&mut rng, &packets);
        let mut r = &bytes[..];
        while let Ok(p) = read_packet(&mut r, 4096, &mut payload) {
            if let Packet::Frame(h) = p {
                assert!(h.len as usize <= 4096 && payload.len() == h.len as usize);
            }
        }
        assert!(payload.capacity() <= 4096, "payload grew past the limit");
    }
}
