//! Writes the fuzz targets' seed inputs into `DIR/TARGET/`, each made by the
//! project's own writers and encoders (what a peer, a camera or a file of
//! ours really sends): the starting points `scripts/fuzz.sh --seed` gives
//! libFuzzer before it minimises the corpora under `fuzz/corpus`. Each seed
//! is laid out as its target reads its input (a target's first byte often
//! chooses a mode). Usage: `cargo run --example fuzz_seeds -- DIR`.

use std::path::{Path, PathBuf};

use livestream::codecs::jpeg::markers::strip_huffman_tables;
use livestream::codecs::jpeg::JpegCodec;
use livestream::codecs::FrameCodec;
use livestream::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};
use livestream::media::recording::{write_header, write_record};
use livestream::net::protocol::{
    write_end, write_keyframe_request, write_packet, write_ping, write_report, ClientHello,
    PacketHeader, Report, ServerHello, Status, PACKET_FRAME,
};
use livestream::secure::handshake::{build_hello, Hello, MAX_HELLO};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds DIR"));
    let seeds = Seeds(dir);
    let rgb = picture(PixelFormat::Rgb24, 64, 48);
    let i420 = picture(PixelFormat::I420, 64, 48);

    // The native protocol, both directions.
    let hello = ServerHello {
        status: Status::Ok,
        codec: "h264".into(),
        frame: i420.info,
        fps: 30.0,
        max_payload: 1 << 16,
        server_time_us: 1_000_000,
        message: "camera".into(),
    };
    let mut stream = Vec::new();
    hello.write(&mut stream).unwrap();
    seeds.put("packets", "server-hello", &stream);
    let mut packets = Vec::new();
    for seq in 0..3u64 {
        let payload = [seq as u8; 40];
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: 0,
            len: payload.len() as u32,
            seq,
            capture_us: 1_000_000 + seq * 33_333,
        };
        write_packet(&mut packets, &h, &payload).unwrap();
    }
    packets.extend_from_slice(&livestream::net::protocol::timing(2, 5_000, 6_000));
    packets.extend_from_slice(&livestream::net::protocol::pong(1, 2, 3, 4));
    write_end(&mut packets, "the server is shutting down", true).unwrap();
    seeds.put("packets", "packets", &packets);
    let mut up = Vec::new();
    ClientHello {
        version: 1,
        renditions: true,
    }
    .write(&mut up)
    .unwrap();
    seeds.put("packets", "client-hello", &up);
    let mut upstream = Vec::new();
    write_ping(&mut upstream, 7, 1_000).unwrap();
    write_report(
        &mut upstream,
        &Report {
            last_us: 20_000,
            p50_us: 18_000,
            p95_us: 30_000,
            frames: 30,
        },
    )
    .unwrap();
    write_keyframe_request(&mut upstream).unwrap();
    seeds.put("packets", "upstream", &upstream);

    // What a connection's first bytes are, on the one port.
    seeds.put("sniff", "native", &up);
    seeds.put(
        "sniff",
        "http",
        b"GET /stream.mjpg HTTP/1.1\r\nHost: cam\r\n\r\n",
    );
    seeds.put(
        "sniff",
        "rtsp",
        b"OPTIONS rtsp://cam/ RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    );
    let mut secure = [0u8; MAX_HELLO];
    let n = build_hello(
        &mut secure,
        &Hello {
            pairing: None,
            aes: true,
        },
    );
    seeds.put("sniff", "secure", &secure[..n]);
    seeds.put(
        "secure_messages",
        "hello",
        &[&[0u8][..], &secure[..n]].concat(),
    );

    // HTTP heads as browsers, players and monitors send them.
    for (name, head) in [
        ("page", &b"GET /?token=abc HTTP/1.1\r\nHost: cam:8080\r\nAccept: text/html\r\n\r\n"[..]),
        ("mjpeg", b"GET /stream.mjpg HTTP/1.1\r\nHost: cam\r\nCookie: livestream_token=abc\r\n\r\n"),
        ("stats", b"HEAD /stats HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n"),
        ("basic", b"GET /metrics HTTP/1.0\r\nAuthorization: Basic dXNlcjphYmM=\r\n\r\n"),
        ("whep", b"POST /whep HTTP/1.1\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"),
        ("delete", b"DELETE /whep/0123abcd HTTP/1.1\r\n\r\n"),
    ] {
        seeds.put("http_head", name, &[&[128u8][..], head].concat());
    }

    // RTSP requests as VLC and ffmpeg send them.
    for (name, req) in [
        ("options", "OPTIONS rtsp://cam:8554/ RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: LibVLC\r\n\r\n"),
        ("describe", "DESCRIBE rtsp://cam:8554/ RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"),
        ("setup-tcp", "SETUP rtsp://cam:8554/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
        ("setup-udp", "SETUP rtsp://cam:8554/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"),
        ("play", "PLAY rtsp://cam:8554/ RTSP/1.0\r\nCSeq: 4\r\nSession: 12345678\r\nRange: npt=0.000-\r\n\r\n"),
    ] {
        seeds.put("rtsp_request", name, req.as_bytes());
    }

    // A recording as the `file` sink writes it: raw pictures and JPEG.
    for (name, frame) in [("rgb", &rgb), ("i420", &i420)] {
        let mut file = vec![1u8];
        write_header(
            &mut file,
            &StreamInfo {
                frame: frame.info,
                fps: 30.0,
            },
        )
        .unwrap();
        for seq in 0..2 {
            let mut f = frame.clone();
            f.seq = seq;
            write_record(&mut file, &f).unwrap();
        }
        seeds.put("recording", name, &file);
        file[0] = 0;
        seeds.put("recording", &format!("{name}-read"), &file);
    }

    // JPEG from our encoder, with and without its Huffman tables (as UVC
    // cameras send it).
    let mut jpeg = Vec::new();
    JpegCodec::with_quality(80)
        .unwrap()
        .encode(&rgb, &mut jpeg)
        .unwrap();
    let bare = strip_huffman_tables(&jpeg).unwrap();
    for target in ["jpeg", "rtp_jpeg"] {
        seeds.put(target, "encoded", &jpeg);
        seeds.put(target, "no-tables", &bare);
    }

    // The trust files and the config as `livestream` writes and ships them.
    seeds.put(
        "trust_files",
        "key",
        format!(
            "# livestream key pair\nprivate {}\npublic {}\n",
            "0f".repeat(32),
            "a1".repeat(32)
        )
        .as_bytes(),
    );
    seeds.put(
        "trust_files",
        "peers",
        format!(
            "# livestream: trusted peers (KEY ADDRESS NAME), one per line\n{} 192.168.1.20:7878 kitchen pi\n",
            "5c".repeat(32)
        )
        .as_bytes(),
    );
    seeds.put(
        "config",
        "embedded",
        livestream::backend::table::ConfigText::embedded()
            .text
            .as_bytes(),
    );
    seeds.put(
        "config",
        "small",
        b"[serve]\nsource = \"test-pattern\"\ncodec = \"h264\"\nlisten = \"0.0.0.0:7878\"\n\n[source.test-pattern]\nwidth = 640\nheight = 480\n",
    );

    #[cfg(feature = "h264")]
    h264_seeds(&seeds, &i420);
    eprintln!("seeds written under {}", seeds.0.display());
}

/// Access units from the h264 codec, laid out for each H.264 target.
#[cfg(feature = "h264")]
fn h264_seeds(seeds: &Seeds, picture: &Frame) {
    use livestream::backend::Kind;
    use livestream::config::{Config, Overrides};
    let cfg = Config::parse(
        livestream::backend::table::ConfigText::embedded(),
        &Overrides::default(),
    )
    .unwrap();
    let mut codec =
        (livestream::registry::codec("h264").unwrap().open)(&cfg.backend(Kind::Codec, "h264"))
            .unwrap();
    codec
        .begin(&StreamInfo {
            frame: picture.info,
            fps: 30.0,
        })
        .unwrap();
    let mut units = Vec::new();
    for seq in 0..3u64 {
        let mut f = picture.clone();
        f.seq = seq;
        f.data
            .iter_mut()
            .for_each(|b| *b = b.wrapping_add(seq as u8 * 3));
        let mut out = Vec::new();
        codec.encode(&f, &mut out).unwrap();
        units.push(out);
    }
    let (mut decode, mut mp4) = (Vec::new(), Vec::new());
    for u in &units {
        let len = (u.len() as u16).to_le_bytes();
        decode.extend_from_slice(&len);
        decode.extend_from_slice(u);
        mp4.push(33);
        mp4.extend_from_slice(&len);
        mp4.extend_from_slice(u);
    }
    seeds.put("annexb", "keyframe", &units[0]);
    seeds.put("annexb", "p-frame", &units[1]);
    seeds.put("h264_decode", "three", &decode);
    seeds.put("mp4_write", "three", &mp4);
    seeds.put("rtp_h264", "keyframe", &[&[200u8][..], &units[0]].concat());
    seeds.put(
        "rtp_h264",
        "small-packets",
        &[&[20u8][..], &units[0]].concat(),
    );
}

/// A picture with detail: a gradient and a diagonal.
fn picture(format: PixelFormat, width: u32, height: u32) -> Frame {
    let info = FrameInfo::packed(format, width, height).unwrap();
    let mut f = Frame::empty();
    f.reset(info);
    let n = f.data.len();
    for (i, b) in f.data.iter_mut().enumerate() {
        *b = ((i * 7 + i / 64 * 13) % 251) as u8 ^ if i % 97 < 3 { 0xFF } else { 0 };
    }
    debug_assert_eq!(n, info.byte_len());
    f
}

struct Seeds(PathBuf);

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir: &Path = &self.0.join(target);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
