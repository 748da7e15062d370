//! RTP and RTCP as the RTSP server speaks them (RFC 3550), with H.264 in RTP
//! (RFC 6184, packetization mode 1: single NAL unit packets, and FU-A
//! fragments for NAL units larger than a packet). Pure functions over byte
//! slices: no sockets, no clock.
//!
//! Sending allocates nothing: [`H264Packets`] walks an access unit and yields
//! each packet as a small head (the RTP header, plus the two FU-A bytes of a
//! fragment) and a slice of the access unit, for a vectored write.
//! [`H264Depacketizer`] is the receiving side (the tests, the fuzz target and
//! clients in this crate use it); its input is untrusted.

use std::fmt;

use crate::media::annexb::{nal_units, Nal, NalUnits};

/// The RTP clock of video: 90 kHz.
pub const H264_CLOCK_RATE: u32 = 90_000;
/// The dynamic payload type our SDP gives H.264.
pub const H264_PAYLOAD_TYPE: u8 = 96;
/// RTP payload bytes in one packet at most: a 1500-byte Ethernet frame less
/// the IP, UDP and RTP headers, with room left for a VPN or PPPoE.
pub const MAX_PAYLOAD: usize = 1400;
/// RTP header without CSRCs or extension.
pub const RTP_HEADER: usize = 12;
/// Payload-format headers a packet's head may hold after the RTP header: an
/// FU-A's two bytes, or RTP/JPEG's main, restart and quantisation-table
/// headers (8 + 4 + 4 + 128).
pub const MAX_FORMAT_HEADER: usize = 144;

const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// The state of one outgoing RTP stream: its source id, payload type, and the
/// sequence number of the next packet.
#[derive(Clone, Copy, Debug)]
pub struct RtpStream {
    pub ssrc: u32,
    pub payload_type: u8,
    pub next_seq: u16,
    /// Packets and payload bytes sent so far (for sender reports).
    pub packets: u32,
    pub octets: u32,
}

impl RtpStream {
    /// The next packet of this stream: its RTP header, then `format_head`
    /// (the payload format's own headers, at most [`MAX_FORMAT_HEADER`]
    /// bytes), then `payload`. Counts it for sender reports.
    pub fn packet<'a>(
        &mut self,
        timestamp: u32,
        marker: bool,
        format_head: &[u8],
        payload: &'a [u8],
    ) -> RtpPacket<'a> {
        let mut head = [0u8; RTP_HEADER + MAX_FORMAT_HEADER];
        head[0] = 0x80; // version 2, no padding, no extension, no CSRC
        head[1] = (u8::from(marker) << 7) | (self.payload_type & 0x7f);
        head[2..4].copy_from_slice(&self.next_seq.to_be_bytes());
        head[4..8].copy_from_slice(&timestamp.to_be_bytes());
        head[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let extra = format_head.len().min(MAX_FORMAT_HEADER);
        head[RTP_HEADER..RTP_HEADER + extra].copy_from_slice(&format_head[..extra]);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add((extra + payload.len()) as u32);
        RtpPacket {
            head,
            head_len: (RTP_HEADER + extra) as u8,
            payload,
        }
    }

    /// A stream with a random source id and first sequence number, as RFC
    /// 3550 asks (`random` is the caller's, so tests can fix it).
    pub fn new(payload_type: u8, random: u64) -> RtpStream {
        RtpStream {
            ssrc: random as u32,
            payload_type,
            next_seq: (random >> 32) as u16,
            packets: 0,
            octets: 0,
        }
    }
}

/// One RTP packet of an access unit.
#[derive(Clone, Copy)]
pub struct RtpPacket<'a> {
    head: [u8; RTP_HEADER + MAX_FORMAT_HEADER],
    head_len: u8,
    /// The rest of the packet, in the access unit.
    pub payload: &'a [u8],
}

impl RtpPacket<'_> {
    /// The RTP header, and the payload format's own (an FU-A fragment's
    /// indicator and header, RTP/JPEG's headers).
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    pub fn len(&self) -> usize {
        self.head_len as usize + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The sequence number.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.head[2], self.head[3]])
    }

    /// The marker bit: the last packet of its access unit.
    pub fn marker(&self) -> bool {
        self.head[1] & 0x80 != 0
    }
}

impl fmt::Debug for RtpPacket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RtpPacket(seq {}, {} + {} bytes{})",
            self.seq(),
            self.head_len,
            self.payload.len(),
            if self.marker() { ", marker" } else { "" }
        )
    }
}

/// The RTP packets of one H.264 access unit (Annex-B), in order; the last has
/// the marker bit. Each NAL unit that fits goes in a packet of its own, a
/// larger one in FU-A fragments of at most `max_payload` bytes. Stops at the
/// first malformed NAL unit, or one of a type RTP cannot carry as it is (0,
/// 24-31): the access units it is given are checked before they are
/// published, so that is a bug, which the caller logs ([`H264Packets::failed`]).
pub struct H264Packets<'a, 's> {
    nals: std::iter::Peekable<NalUnits<'a>>,
    /// The NAL unit being fragmented and how much of its payload is sent.
    current: Option<(Nal<'a>, usize)>,
    stream: &'s mut RtpStream,
    timestamp: u32,
    max_payload: usize,
    failed: bool,
}

impl<'a, 's> H264Packets<'a, 's> {
    /// `timestamp`: the access unit's RTP time (90 kHz). `max_payload` is
    /// raised to 64 if smaller (a fragment must carry something).
    pub fn new(
        au: &'a [u8],
        timestamp: u32,
        stream: &'s mut RtpStream,
        max_payload: usize,
    ) -> H264Packets<'a, 's> {
        H264Packets {
            nals: nal_units(au).peekable(),
            current: None,
            stream,
            timestamp,
            max_payload: max_payload.max(64),
            failed: false,
        }
    }

    /// The access unit had a malformed NAL unit: the packets stopped there.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn packet(&mut self, marker: bool, fu: Option<[u8; 2]>, payload: &'a [u8]) -> RtpPacket<'a> {
        let fu = fu.as_ref().map_or(&[][..], |f| &f[..]);
        self.stream.packet(self.timestamp, marker, fu, payload)
    }
}

impl<'a> Iterator for H264Packets<'a, '_> {
    type Item = RtpPacket<'a>;

    fn next(&mut self) -> Option<RtpPacket<'a>> {
        loop {
            if let Some((nal, sent)) = self.current {
                let last_nal = self.nals.peek().is_none();
                if sent == 0 && nal.bytes.len() <= self.max_payload {
                    self.current = None;
                    return Some(self.packet(last_nal, None, nal.bytes));
                }
                // FU-A: the NAL header's F and NRI bits with type 28, then
                // start and end flags with the NAL unit's own type.
                let header = nal.bytes[0];
                let body = &nal.bytes[1..];
                let from = sent;
                let to = (from + self.max_payload - 2).min(body.len());
                let end = to == body.len();
                let fu = [
                    (header & 0xe0) | FU_A,
                    (u8::from(from == 0) << 7) | (u8::from(end) << 6) | (header & 0x1f),
                ];
                self.current = (!end).then_some((nal, to));
                return Some(self.packet(end && last_nal, Some(fu), &body[from..to]));
            }
            match self.nals.next()? {
                // Types 0 and 24-31 are unspecified in H.264, and 24-31 would
                // read as RTP aggregation or fragment units.
                Ok(nal) if (1..=23).contains(&nal.kind()) => self.current = Some((nal, 0)),
                _ => {
                    self.failed = true;
                    return None;
                }
            }
        }
    }
}

/// What is wrong with an RTP packet or its H.264 payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("an RTP packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("the RTP header's CSRCs, extension or padding run past the packet's {0} bytes")]
    HeaderPastEnd(usize),
    #[error("an empty H.264 payload")]
    EmptyPayload,
    #[error("H.264 NAL unit type {0} is not one RFC 6184 mode 1 sends")]
    UnsupportedNal(u8),
    #[error("a STAP-A's NAL unit of {len} bytes runs past its packet")]
    StapPastEnd { len: usize },
    #[error("an FU-A fragment without its start (a packet was lost)")]
    FragmentWithoutStart,
    #[error("packets were lost: sequence {got} after {last}")]
    Lost { last: u16, got: u16 },
    #[error("an access unit over {max} bytes")]
    TooLarge { max: usize },
}

/// The RTP header of `packet` and where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload: `packet[payload.0..payload.1]`.
    pub payload: (usize, usize),
}

/// Reads an RTP header (RFC 3550 section 5.1), skipping CSRCs and a header
/// extension and leaving out padding.
pub fn parse_rtp(packet: &[u8]) -> Result<RtpHeader, RtpError> {
    let n = packet.len();
    if n < RTP_HEADER {
        return Err(RtpError::Short(n));
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut start = RTP_HEADER + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        // Extension: 16-bit profile, 16-bit length in 32-bit words.
        let words = packet
            .get(start + 2..start + 4)
            .ok_or(RtpError::HeaderPastEnd(n))?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = n;
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(packet[n - 1]);
        end = n.checked_sub(pad).ok_or(RtpError::HeaderPastEnd(n))?;
    }
    if start > end {
        return Err(RtpError::HeaderPastEnd(n));
    }
    Ok(RtpHeader {
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7f,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        payload: (start, end),
    })
}

/// Puts H.264 access units back together from RTP packets (single NAL unit,
/// STAP-A and FU-A), in Annex-B form. A lost or broken packet drops the
/// access unit it was in (the caller then waits for a keyframe: the units
/// after it may depend on it). Memory is bounded by `max`.
pub struct H264Depacketizer {
    au: Vec<u8>,
    max: usize,
    /// The RTP time of the access unit being put together.
    timestamp: Option<u32>,
    last_seq: Option<u16>,
    /// Inside an FU-A whose fragments so far are whole.
    in_fragment: bool,
    /// Something of this access unit was lost: it is dropped.
    broken: bool,
    /// The last call returned the access unit: clear it on the next.
    complete: bool,
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

impl H264Depacketizer {
    /// Access units of at most `max` bytes.
    pub fn new(max: usize) -> H264Depacketizer {
        H264Depacketizer {
            au: Vec::new(),
            max,
            timestamp: None,
            last_seq: None,
            in_fragment: false,
            broken: false,
            complete: false,
        }
    }

    /// Takes one RTP packet. Returns the access unit it completes (the marker
    /// bit), or `Ok(None)`. An error says what was wrong with this packet, or
    /// what was lost before it; the access unit it belongs to is dropped.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<&[u8]>, RtpError> {
        if std::mem::take(&mut self.complete) {
            self.au.clear();
        }
        let header = match parse_rtp(packet) {
            Ok(h) => h,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        if self.timestamp != Some(header.timestamp) {
            // A new access unit: what was left of the last one (its end was
            // lost) is dropped.
            self.timestamp = Some(header.timestamp);
            self.au.clear();
            self.in_fragment = false;
            self.broken = false;
        }
        let last = self.last_seq.replace(header.seq);
        let result = match last {
            Some(last) if header.seq != last.wrapping_add(1) => Err(RtpError::Lost {
                last,
                got: header.seq,
            }),
            _ => self.append(&packet[header.payload.0..header.payload.1]),
        };
        if result.is_err() {
            self.broken = true;
            self.in_fragment = false;
        }
        if header.marker {
            let whole = !std::mem::take(&mut self.broken) && !self.in_fragment;
            self.in_fragment = false;
            self.timestamp = None;
            if whole && !self.au.is_empty() {
                self.complete = true;
                return Ok(Some(&self.au));
            }
            self.au.clear();
        }
        result.map(|()| None)
    }

    fn put(&mut self, parts: &[&[u8]]) -> Result<(), RtpError> {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if self.au.len() + n > self.max {
            return Err(RtpError::TooLarge { max: self.max });
        }
        for p in parts {
            self.au.extend_from_slice(p);
        }
        Ok(())
    }

    fn append(&mut self, body: &[u8]) -> Result<(), RtpError> {
        let Some(&first) = body.first() else {
            return Err(RtpError::EmptyPayload);
        };
        match first & 0x1f {
            1..=23 => {
                if self.in_fragment {
                    return Err(RtpError::FragmentWithoutStart);
                }
                self.put(&[&START_CODE, body])
            }
            STAP_A => {
                let mut rest = &body[1..];
                while !rest.is_empty() {
                    let Some(size) = rest.get(..2) else {
                        return Err(RtpError::StapPastEnd { len: rest.len() });
                    };
                    let len = usize::from(u16::from_be_bytes([size[0], size[1]]));
                    rest = &rest[2..];
                    if len == 0 || len > rest.len() {
                        return Err(RtpError::StapPastEnd { len });
                    }
                    self.put(&[&START_CODE, &rest[..len]])?;
                    rest = &rest[len..];
                }
                Ok(())
            }
            FU_A => {
                let Some(&fu) = body.get(1) else {
                    return Err(RtpError::EmptyPayload);
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    if self.in_fragment {
                        return Err(RtpError::FragmentWithoutStart);
                    }
                    self.put(&[&START_CODE, &[(first & 0xe0) | (fu & 0x1f)]])?;
                    self.in_fragment = true;
                } else if !self.in_fragment {
                    return Err(RtpError::FragmentWithoutStart);
                }
                self.put(&[&body[2..]])?;
                if end {
                    self.in_fragment = false;
                }
                Ok(())
            }
            t => Err(RtpError::UnsupportedNal(t)),
        }
    }
}

/// RTCP packet types (RFC 3550 section 12.1).
const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const RTCP_SDES: u8 = 202;
const SDES_CNAME: u8 = 1;

/// The longest CNAME a sender report carries.
pub const MAX_CNAME: usize = 64;

/// Writes a compound RTCP packet into `out` (cleared first): a sender report
/// (RFC 3550 section 6.4.1) saying that `rtp_time` is `ntp` on the sender's
/// wall clock (NTP format: seconds since 1900 in the high 32 bits), with the
/// stream's packet and octet counts, then the SDES with its CNAME (cut to
/// [`MAX_CNAME`] bytes), which every compound packet must carry.
pub fn write_sender_report(
    out: &mut Vec<u8>,
    stream: &RtpStream,
    ntp: u64,
    rtp_time: u32,
    cname: &str,
) {
    out.clear();
    out.extend_from_slice(&[0x80, RTCP_SR, 0, 6]);
    out.extend_from_slice(&stream.ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_time.to_be_bytes());
    out.extend_from_slice(&stream.packets.to_be_bytes());
    out.extend_from_slice(&stream.octets.to_be_bytes());
    let cname = &cname.as_bytes()[..cname.len().min(MAX_CNAME)];
    // SDES: one chunk (SSRC, CNAME item, end), padded to 32 bits.
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    let words = (4 + padded) / 4 - 1;
    out.extend_from_slice(&[0x81, RTCP_SDES]);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&stream.ssrc.to_be_bytes());
    out.extend_from_slice(&[SDES_CNAME, cname.len() as u8]);
    out.extend_from_slice(cname);
    out.resize(out.len() + 1 + padded - chunk, 0);
}

/// One reception report block (RFC 3550 section 6.4.1): how a receiver
/// fares with one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceptionReport {
    pub ssrc: u32,
    /// Packets lost since the last report, out of 256.
    pub fraction_lost: u8,
    /// Packets lost in all (signed 24-bit: duplicates can make it negative).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP time units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last sender report it had,
    /// and the delay since then in 1/65536 s: with them the sender computes
    /// the round trip.
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// What is wrong with an RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("an RTCP packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("RTCP version {0}, not 2")]
    Version(u8),
    #[error("an RTCP packet's length ({len} bytes) runs past the {left} bytes left")]
    PastEnd { len: usize, left: usize },
    #[error("an RTCP report's {count} blocks need more than its {len} bytes")]
    Blocks { count: usize, len: usize },
}

/// The reception reports in a compound RTCP packet (from receiver and sender
/// reports; other packet types are skipped), given to `each`. Checks every
/// length before it reads.
pub fn reception_reports(
    compound: &[u8],
    mut each: impl FnMut(ReceptionReport),
) -> Result<(), RtcpError> {
    let mut rest = compound;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::Short(rest.len()));
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let count = usize::from(rest[0] & 0x1f);
        let kind = rest[1];
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        if len > rest.len() {
            return Err(RtcpError::PastEnd {
                len,
                left: rest.len(),
            });
        }
        let packet = &rest[..len];
        rest = &rest[len..];
        let blocks_at = match kind {
            RTCP_RR => 8,
            RTCP_SR => 28,
            _ => continue,
        };
        let blocks = packet
            .get(blocks_at..blocks_at + 24 * count)
            .ok_or(RtcpError::Blocks { count, len })?;
        for b in blocks.chunks_exact(24) {
            let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let lost = word(4) & 0x00ff_ffff;
            // Sign-extend 24 bits.
            let cumulative_lost = ((lost << 8) as i32) >> 8;
            each(ReceptionReport {
                ssrc: word(0),
                fraction_lost: b[4],
                cumulative_lost,
                highest_seq: word(8),
                jitter: word(12),
                last_sr: word(16),
                delay_since_last_sr: word(20),
            });
        }
    }
    Ok(())
}

/// Wall-clock time in NTP format (seconds since 1900 in the high 32 bits,
/// the fraction in the low), for sender reports.
pub fn ntp_time(since_unix: std::time::Duration) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let secs = since_unix.as_secs() + UNIX_TO_NTP;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An access unit of an SPS, a PPS and an IDR slice of `idr` bytes.
    fn access_unit(idr: usize) -> Vec<u8> {
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend((0..idr).map(|i| (i % 251) as u8 | 1));
        au
    }

    fn datagrams(au: &[u8], stream: &mut RtpStream, max: usize) -> Vec<Vec<u8>> {
        let mut packets = H264Packets::new(au, 1234, stream, max);
        let out: Vec<Vec<u8>> = packets
            .by_ref()
            .map(|p| [p.head(), p.payload].concat())
            .collect();
        assert!(!packets.failed());
        out
    }

    #[test]
    fn small_nal_units_go_alone_and_large_ones_in_fu_a_fragments() {
        let mut stream = RtpStream::new(96, 0x0000_0001_dead_beef);
        let au = access_unit(3000);
        let packets = datagrams(&au, &mut stream, 1400);
        // SPS, PPS, then 3001 bytes of IDR in fragments of up to 1398.
        assert_eq!(packets.len(), 2 + 3);
        for (i, p) in packets.iter().enumerate() {
            let h = parse_rtp(p).unwrap();
            assert_eq!(
                (h.seq, h.timestamp, h.ssrc),
                (1 + i as u16, 1234, 0xdead_beef)
            );
            assert_eq!(h.marker, i == packets.len() - 1, "packet {i}");
            assert!(p.len() <= RTP_HEADER + 1400);
        }
        assert_eq!(&packets[0][12..], &[0x67, 0x42, 0xc0, 0x1e]);
        // FU indicator: NRI of the IDR (3), type 28; FU header: S, then E.
        assert_eq!(packets[2][12..14], [0x7c, 0x85]);
        assert_eq!(packets[3][12..14], [0x7c, 0x05]);
        assert_eq!(packets[4][12..14], [0x7c, 0x45]);
        assert_eq!(stream.next_seq, 6);
        assert_eq!(stream.packets, 5);
        let payload: usize = packets.iter().map(|p| p.len() - 12).sum();
        assert_eq!(stream.octets as usize, payload);
    }

    #[test]
    fn depacketizing_gives_back_the_access_unit() {
        for max in [64, 100, 1400] {
            let mut stream = RtpStream::new(96, 7);
            let mut depack = H264Depacketizer::new(1 << 20);
            for idr in [1, 63, 64, 65, 1000, 5000] {
                let au = access_unit(idr);
                let packets = datagrams(&au, &mut stream, max);
                let (last, rest) = packets.split_last().unwrap();
                for p in rest {
                    assert_eq!(depack.push(p).unwrap(), None);
                }
                assert_eq!(depack.push(last).unwrap().unwrap(), &au[..], "{max} {idr}");
            }
        }
    }

    #[test]
    fn a_lost_packet_drops_its_access_unit_only() {
        let mut stream = RtpStream::new(96, 7);
        let mut depack = H264Depacketizer::new(1 << 20);
        let first = datagrams(&access_unit(3000), &mut stream, 1400);
        for (i, p) in first.iter().enumerate() {
            if i == 3 {
                continue; // lost
            }
            let got = depack.push(p);
            if i == 4 {
                assert!(matches!(got, Err(RtpError::Lost { .. })), "{got:?}");
            } else {
                assert_eq!(got.unwrap(), None);
            }
        }
        let au = access_unit(10);
        let mut stream2 = stream;
        for p in datagrams(&au, &mut stream2, 1400)
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            assert_eq!(depack.push(p).unwrap(), None);
        }
        let last = datagrams(&au, &mut stream, 1400).pop().unwrap();
        assert_eq!(depack.push(&last).unwrap().unwrap(), &au[..]);
    }

    #[test]
    fn stap_a_and_hostile_payloads() {
        let mut depack = H264Depacketizer::new(64);
        let rtp = |seq: u16, marker: bool, payload: &[u8]| {
            let mut p = vec![0x80, if marker { 0xe0 } else { 0x60 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
            p.extend_from_slice(payload);
            p
        };
        let stap = [24, 0, 2, 0x67, 0x42, 0, 1, 0x68, 0, 2, 0x65, 0x88];
        assert_eq!(
            depack.push(&rtp(1, true, &stap)).unwrap().unwrap(),
            &[0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 0x88]
        );
        for (seq, bad, why) in [
            (2, &[24, 0, 9, 1][..], RtpError::StapPastEnd { len: 9 }),
            (3, &[24, 0][..], RtpError::StapPastEnd { len: 1 }),
            (4, &[28, 0x05, 1][..], RtpError::FragmentWithoutStart),
            (5, &[30, 1][..], RtpError::UnsupportedNal(30)),
            (6, &[][..], RtpError::EmptyPayload),
            (7, &[0x65; 80][..], RtpError::TooLarge { max: 64 }),
        ] {
            assert_eq!(depack.push(&rtp(seq, true, bad)), Err(why));
        }
        assert_eq!(depack.push(&[0x80, 0]), Err(RtpError::Short(2)));
        assert_eq!(depack.push(&[0x40; 12]), Err(RtpError::Version(1)));
        // Padding longer than the packet.
        let mut padded = rtp(8, true, &[0x65]);
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 200;
        assert_eq!(depack.push(&padded), Err(RtpError::HeaderPastEnd(13)));
    }

    #[test]
    fn sender_reports_parse_back_and_receiver_reports_are_read() {
        let stream = RtpStream {
            ssrc: 0x1122_3344,
            payload_type: 96,
            next_seq: 0,
            packets: 10,
            octets: 12_000,
        };
        let mut out = Vec::new();
        write_sender_report(
            &mut out,
            &stream,
            0xaabb_ccdd_0011_2233,
            90_000,
            "livestream@pi",
        );
        assert_eq!(out.len() % 4, 0);
        assert_eq!(&out[..2], &[0x80, 200]);
        assert_eq!(&out[8..16], &0xaabb_ccdd_0011_2233u64.to_be_bytes());
        let mut n = 0;
        reception_reports(&out, |_| n += 1).unwrap();
        assert_eq!(n, 0, "a sender report with no blocks");

        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 5];
        rr.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        rr.extend_from_slice(&[64, 0xff, 0xff, 0xfe]); // 25 %, -2 lost
        rr.extend_from_slice(&70_000u32.to_be_bytes());
        rr.extend_from_slice(&45u32.to_be_bytes());
        rr.extend_from_slice(&0xccdd_0011u32.to_be_bytes());
        rr.extend_from_slice(&65536u32.to_be_bytes());
        let mut got = Vec::new();
        reception_reports(&rr, |r| got.push(r)).unwrap();
        assert_eq!(
            got,
            [ReceptionReport {
                ssrc: 0x1122_3344,
                fraction_lost: 64,
                cumulative_lost: -2,
                highest_seq: 70_000,
                jitter: 45,
                last_sr: 0xccdd_0011,
                delay_since_last_sr: 65536,
            }]
        );
        assert_eq!(
            reception_reports(&rr[..20], |_| {}),
            Err(RtcpError::PastEnd { len: 32, left: 20 })
        );
        let mut lying = rr.clone();
        lying[0] = 0x83; // three blocks in a packet with room for one
        assert_eq!(
            reception_reports(&lying, |_| {}),
            Err(RtcpError::Blocks { count: 3, len: 32 })
        );
    }

    #[test]
    fn ntp_time_counts_from_1900() {
        let t = ntp_time(std::time::Duration::from_millis(1500));
        assert_eq!(t >> 32, 2_208_988_801);
        assert_eq!(t & 0xffff_ffff, 1 << 31);
    }
}
