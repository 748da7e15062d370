//! Each viewer gets what its own link carries (the adaptive-quality issue):
//! first, the server's estimate of each TCP viewer's link, from its
//! connection (`src/server/link.rs`), over a real link shaped by tbf between
//! two network namespaces.

use std::time::{Duration, Instant};

use crate::util::{NetnsPair, SERVE_PLAINTEXT, VIEW_PLAINTEXT};
use crate::wait::poll_until;

/// The link figures `/stats` gives for the viewer at 10.231.0.2.
fn link_of(net: &NetnsPair, addr: &str) -> Option<(f64, bool)> {
    let stats = net.stats(addr);
    let viewer = stats["viewers"]
        .as_array()?
        .iter()
        .find(|v| {
            v["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("10.231.0.2:"))
        })?
        .clone();
    let link = viewer.get("link")?;
    Some((link["kbit"].as_f64()?, link["measured"].as_bool()?))
}

/// Waits until the viewer's link is measured within 40 % below and 15 %
/// above `kbit`; returns how long that took.
fn wait_for_link(net: &NetnsPair, addr: &str, kbit: f64, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    // At most four requests a second: the server's accept limits how fast
    // one address may connect, and this one is the test's.
    let mut fetched: Option<Instant> = None;
    let found = poll_until(within, || {
        if fetched.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return None;
        }
        fetched = Some(Instant::now());
        last = link_of(net, addr);
        last.filter(|&(k, measured)| measured && k >= kbit * 0.6 && k <= kbit * 1.15)
    });
    assert!(
        found.is_some(),
        "the viewer's link is not measured near {kbit} kbit/s within {within:?}: last {last:?}"
    );
    start.elapsed()
}

/// A raw stream (55 Mbit/s) to a viewer behind a 6 Mbit/s link: the server
/// measures about 6, then about 1.5 within 4 s of the link dropping to that,
/// and says so in `/metrics` too.
#[test]
fn the_server_measures_each_viewers_link_and_follows_it_down() {
    let net = NetnsPair::new(Some("6mbit"));
    let addr = "10.231.0.1:7890";
    let mut server = net.serve(addr, &["--codec", "raw", SERVE_PLAINTEXT]);
    let mut viewer = NetnsPair::livestream(
        &net.viewer_ns,
        "view (6 Mbit/s)",
        &["view", addr, "--sink", "null", VIEW_PLAINTEXT],
    );
    let first = wait_for_link(&net, addr, 6000.0, Duration::from_secs(10));
    net.set_rate("1500kbit");
    // The estimate looks back 2 s (server/link.rs WINDOW_US), sampled every
    // 0.2 s; this poll every 0.25 s: 2.5-2.9 s here.
    let down = wait_for_link(&net, addr, 1500.0, Duration::from_secs(4));
    eprintln!("link measured at 6 Mbit/s after {first:?}; at 1.5 Mbit/s {down:?} after the change");
    // The viewer is told (a link packet a second) and shows it.
    let told = poll_until(Duration::from_secs(4), || {
        let said = viewer.stderr();
        let last = said
            .rsplit("link ~")
            .next()
            .filter(|_| said.contains("link ~"))?;
        let mbit: f64 = last.split(' ').next()?.parse().ok()?;
        (0.9..=1.8).contains(&mbit).then_some(mbit)
    });
    assert!(
        told.is_some(),
        "the viewer's status line: {}",
        viewer.stderr()
    );
    let metrics_addr = addr.to_string();
    let metrics = net.in_server_ns(move || {
        let body = crate::http_client::get(&metrics_addr, "/metrics").body;
        String::from_utf8(body).unwrap()
    });
    let line = metrics
        .lines()
        .find(|l| l.starts_with("livestream_viewer_link_bytes_per_second{peer=\"10.231.0.2:"))
        .unwrap_or_else(|| panic!("no link line in /metrics:\n{metrics}"));
    let bps: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.9e6 / 8.0..=1.8e6 / 8.0).contains(&bps), "{line}");
    assert!(metrics.contains("livestream_viewer_link_measured{peer=\"10.231.0.2:"));
    viewer.terminate();
    server.terminate();
    server.assert_no_panic();
}
