//! Finding cameras on the network without typing addresses: `serve` announces
//! itself with mDNS/DNS-SD (service `_livestream._tcp`), `livestream list` and
//! `livestream view` (with no address, or a name) look for it. Built on the
//! `mdns-sd` crate; its daemon runs on a thread of its own, shut down and waited
//! for when the announcement or the search ends.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

/// The DNS-SD service type.
pub const SERVICE: &str = "_livestream._tcp.local.";

/// Why discovery could not run.
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError(e.to_string())
    }
}

/// What a server says about itself in its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The stream's name (also the instance name).
    pub name: String,
    pub codec: String,
    /// `WIDTHxHEIGHT`.
    pub size: String,
    /// Whether a viewer must be paired first: `required` or `none`.
    pub pairing: String,
    /// The server key's fingerprint, with pairing (for a person to compare).
    pub key: Option<String>,
}

/// A server announcing itself.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Advertiser {
    /// Announces a server listening on `listen`: on every interface for an
    /// unspecified address (0.0.0.0), on that address's interface otherwise.
    /// Returns `None` for a loopback address: nobody else could connect to it.
    pub fn start(
        listen: SocketAddr,
        what: &Announcement,
    ) -> Result<Option<Advertiser>, DiscoveryError> {
        if listen.ip().is_loopback() {
            return Ok(None);
        }
        let addrs: Vec<IpAddr> = if listen.ip().is_unspecified() {
            if_addrs::get_if_addrs()
                .map_err(|e| DiscoveryError(format!("listing interfaces: {e}")))?
                .into_iter()
                .filter(|i| !i.is_loopback() && i.ip().is_ipv4())
                .map(|i| i.ip())
                .collect()
        } else {
            vec![listen.ip()]
        };
        if addrs.is_empty() {
            return Ok(None);
        }
        let daemon = ServiceDaemon::new()?;
        // Only the interfaces the server can be reached on.
        daemon.disable_interface(mdns_sd::IfKind::All)?;
        for a in &addrs {
            daemon.enable_interface(*a)?;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "livestream".into());
        let instance = instance_name(&what.name);
        let mut props = vec![
            ("name", what.name.as_str()),
            ("codec", what.codec.as_str()),
            ("size", what.size.as_str()),
            ("pairing", what.pairing.as_str()),
        ];
        if let Some(key) = &what.key {
            props.push(("key", key.as_str()));
        }
        let info = ServiceInfo::new(
            SERVICE,
            &instance,
            &format!("{host}.local."),
            &addrs[..],
            listen.port(),
            &props[..],
        )?;
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        log::info!(
            "announced as \"{instance}\" ({SERVICE}) on {}",
            addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Some(Advertiser { daemon, fullname }))
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        // Say goodbye (viewers' lists drop us at once), then stop the daemon's
        // thread and wait for it.
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(rx) = self.daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// An instance name DNS-SD takes: at most 63 bytes, cut on a character boundary.
fn instance_name(name: &str) -> String {
    let mut n = name.trim().to_string();
    if n.is_empty() {
        n = "livestream".into();
    }
    while n.len() > 63 {
        n.pop();
    }
    n
}

/// A server found on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The instance name (the stream's name).
    pub name: String,
    /// Where to connect, IPv4 first.
    pub addrs: Vec<SocketAddr>,
    /// TXT record fields.
    pub txt: BTreeMap<String, String>,
}

impl Found {
    pub fn address(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }
}

/// Looks for servers for `wait` (the responders answer within about a second),
/// or until `enough` of them are found. Sorted by name.
pub fn browse(wait: Duration, enough: Option<usize>) -> Result<Vec<Found>, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    let rx = daemon.browse(SERVICE)?;
    let deadline = Instant::now() + wait;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if enough.is_some_and(|n| found.len() >= n) {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let mut addrs: Vec<SocketAddr> = s
                    .get_addresses()
                    .iter()
                    .map(|ip| SocketAddr::new(ip.to_ip_addr(), s.get_port()))
                    .collect();
                addrs.sort_by_key(|a| (a.is_ipv6(), *a));
                let txt = s
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_string(), p.val_str().to_string()))
                    .collect();
                let name = s
                    .get_fullname()
                    .strip_suffix(&format!(".{SERVICE}"))
                    .unwrap_or(s.get_fullname())
                    .replace("\\.", ".")
                    .replace("\\\\", "\\");
                found.insert(s.get_fullname().to_string(), Found { name, addrs, txt });
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE);
    if let Ok(rx) = daemon.shutdown() {
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
    let mut list: Vec<Found> = found
        .into_values()
        .filter(|f| !f.addrs.is_empty())
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_fit_dns_sd() {
        assert_eq!(instance_name("  kitchen  "), "kitchen");
        assert_eq!(instance_name(""), "livestream");
        let long = "é".repeat(40);
        let n = instance_name(&long);
        assert!(n.len() <= 63 && n.chars().all(|c| c == 'é'));
    }
}
