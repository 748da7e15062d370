//! `livestream list`: the servers announcing themselves on the local network
//! (mDNS/DNS-SD), one a line with their addresses, codec, size and pairing.
//! On the main thread, which waits `--wait` seconds for answers.

use std::time::Duration;

use super::{seconds, Failure, ListArgs};
use crate::net::discovery::{self, Found};

pub(super) fn run(args: &ListArgs) -> Result<(), Failure> {
    let wait = seconds("--wait", Some(args.wait))?.unwrap_or(Duration::from_secs(3));
    let found = discovery::browse(wait, None).map_err(Failure::failed)?;
    if found.is_empty() {
        println!(
            "no livestream server found on the network (mDNS, {:.1} s)",
            wait.as_secs_f64()
        );
    }
    for f in &found {
        println!("{}", line(f));
    }
    Ok(())
}

/// `NAME  ADDRESSES  codec C, SIZE, pairing P[, key K]`, from the announcement.
fn line(f: &Found) -> String {
    let addrs: Vec<String> = f.addrs.iter().map(|a| a.to_string()).collect();
    let field = |k: &str| f.txt.get(k).map_or("?", String::as_str);
    format!(
        "{}  {}  codec {}, {}, pairing {}{}",
        f.name,
        addrs.join(" "),
        field("codec"),
        field("size"),
        field("pairing"),
        f.txt
            .get("key")
            .map_or(String::new(), |k| format!(", key {k}"))
    )
}
