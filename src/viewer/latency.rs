//! The latency book: where each frame's time went, capture to presented, all
//! on the server's clock (`docs/latency.md`). Pure: stamps in, histograms and
//! CSV rows out; no clock is read here, so it is tested with made-up times.
//! The calling thread of `view` keeps it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::media::histogram::LatencyHistogram;

/// Time spent in each stage, µs, for frames whose timing the server sent.
#[derive(Debug, Default, Clone)]
pub struct Stages {
    /// Captured → encoded (server).
    pub encode: LatencyHistogram,
    /// Encoded → written to this viewer's socket (server: waiting for the viewer).
    pub queue: LatencyHistogram,
    /// Written → received here (the network, and the kernel buffers on the way).
    pub network: LatencyHistogram,
    /// Received → decoded (here, including the wait for the decoder).
    pub decode: LatencyHistogram,
    /// Decoded → presented (the sink).
    pub present: LatencyHistogram,
}

impl Stages {
    pub fn all(&self) -> [(&'static str, &LatencyHistogram); 5] {
        [
            ("encode", &self.encode),
            ("queue", &self.queue),
            ("network", &self.network),
            ("decode", &self.decode),
            ("present", &self.present),
        ]
    }

    pub(crate) fn clear(&mut self) {
        for h in [
            &mut self.encode,
            &mut self.queue,
            &mut self.network,
            &mut self.decode,
            &mut self.present,
        ] {
            h.clear();
        }
    }

    /// Adds one frame's stages, when the server timed it.
    pub(crate) fn record(&mut self, m: &Moments) {
        if let Some((encoded, sent)) = m.encoded_sent {
            self.encode.record(span(m.captured, encoded));
            self.queue.record(span(encoded, sent));
            self.network.record(span(sent, m.received));
            self.decode.record(span(m.received, m.decoded));
            self.present.record(span(m.decoded, m.presented));
        }
    }
}

/// A frame's moments on the server's clock, µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moments {
    pub(crate) seq: u64,
    pub(crate) captured: i64,
    /// From the frame's timing packet, when it came.
    pub(crate) encoded_sent: Option<(i64, i64)>,
    pub(crate) received: i64,
    pub(crate) decoded: i64,
    pub(crate) presented: i64,
}

/// One frame's stamps as they were taken: the server's (its clock), and ours
/// (received, decoded, presented, our clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamps {
    pub(crate) seq: u64,
    pub(crate) captured_us: u64,
    pub(crate) timing: Option<(u64, u64)>,
    pub(crate) ours_us: [u64; 3],
}

impl Stamps {
    /// Moves our stamps onto the server's clock (`offset`: server minus ours).
    pub(crate) fn on_server(&self, offset: i64) -> Moments {
        let [received, decoded, presented] = self.ours_us.map(|t| t as i64 + offset);
        Moments {
            seq: self.seq,
            captured: self.captured_us as i64,
            encoded_sent: self.timing.map(|(e, s)| (e as i64, s as i64)),
            received,
            decoded,
            presented,
        }
    }
}

impl Moments {
    /// Capture to presented.
    pub(crate) fn latency_us(&self) -> u64 {
        span(self.captured, self.presented)
    }
}

/// `b - a`, never negative (clock estimates can cross by a few µs).
fn span(a: i64, b: i64) -> u64 {
    (b - a).max(0) as u64
}

/// The per-frame latency log (`view --latency-log`): CSV, times on the server's
/// clock in µs.
pub(crate) struct LatencyLog {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl LatencyLog {
    pub(crate) fn create(path: &Path) -> std::io::Result<LatencyLog> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            out,
            "seq,captured_us,encoded_us,sent_us,received_us,decoded_us,presented_us,latency_ms,clock_offset_us,clock_rtt_us"
        )?;
        Ok(LatencyLog {
            out,
            path: path.to_path_buf(),
        })
    }

    /// One frame's line, written without allocating (stages the server did not
    /// time are left empty).
    pub(crate) fn row(&mut self, m: &Moments, (offset, rtt): (i64, u64)) {
        let out = &mut self.out;
        let written = write_row(out, m, (offset, rtt));
        if let Err(e) = written {
            log::warn!("latency log {}: {e}", self.path.display());
        }
    }

    pub(crate) fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            log::warn!("latency log {}: {e}", self.path.display());
        }
    }
}

fn write_row(out: &mut impl Write, m: &Moments, (offset, rtt): (i64, u64)) -> std::io::Result<()> {
    write!(out, "{},{},", m.seq, m.captured)?;
    match m.encoded_sent {
        Some((encoded, sent)) => write!(out, "{encoded},{sent},")?,
        None => write!(out, ",,")?,
    }
    writeln!(
        out,
        "{},{},{},{:.3},{offset},{rtt}",
        m.received,
        m.decoded,
        m.presented,
        m.latency_us() as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_on_the_servers_clock() {
        // Our clock runs 1000 µs behind the server's.
        let stamps = Stamps {
            seq: 7,
            captured_us: 10_000,
            timing: Some((12_000, 13_000)),
            ours_us: [14_000, 15_500, 16_000],
        };
        let m = stamps.on_server(1000);
        assert_eq!(
            (m.received, m.decoded, m.presented),
            (15_000, 16_500, 17_000)
        );
        assert_eq!(m.latency_us(), 7000);
        let mut s = Stages::default();
        s.record(&m);
        let medians: Vec<f64> = s.all().iter().map(|(_, h)| h.mean_us().unwrap()).collect();
        assert_eq!(medians, [2000.0, 1000.0, 2000.0, 1500.0, 500.0]);
        let mut row = Vec::new();
        write_row(&mut row, &m, (1000, 40)).unwrap();
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "7,10000,12000,13000,15000,16500,17000,7.000,1000,40\n"
        );
    }

    #[test]
    fn untimed_frames_and_crossed_clocks() {
        let m = Stamps {
            seq: 1,
            captured_us: 10_000,
            timing: None,
            ours_us: [9_000, 9_100, 9_200],
        }
        .on_server(0);
        assert_eq!(
            m.latency_us(),
            0,
            "an estimate that crosses is 0, not negative"
        );
        let mut s = Stages::default();
        s.record(&m);
        assert!(
            s.all().iter().all(|(_, h)| h.count() == 0),
            "no timing, no stages"
        );
        let mut row = Vec::new();
        write_row(&mut row, &m, (0, 0)).unwrap();
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "1,10000,,,9000,9100,9200,0.000,0,0\n"
        );
    }
}
