//! The words of `[serve] webrtc-candidates` and `webrtc-networks`: an extra
//! ICE candidate (`203.0.113.7`, `192.168.1.20:8555`, `[2001:db8::7]:8555`,
//! `nas.lan`) and a network (`192.168.0.0/16`), parsed from text with the
//! reason a value is refused, and which addresses a list of networks keeps.
//! Pure; the configuration parses them at start, the `webrtc` thread uses them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Where an extra candidate is: an address, or a name resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateHost {
    Ip(IpAddr),
    Name(String),
}

/// A candidate offered besides the machine's own addresses: what a browser
/// should try when NAT or a container hides the address the socket has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraCandidate {
    pub host: CandidateHost,
    /// `None`: the WebRTC UDP port.
    pub port: Option<u16>,
}

/// The longest host name (RFC 1035, without the final dot).
const MAX_NAME: usize = 253;

impl ExtraCandidate {
    /// `ADDRESS`, `ADDRESS:PORT`, `[IPV6]:PORT`, `NAME` or `NAME:PORT`.
    pub fn parse(text: &str) -> Result<ExtraCandidate, String> {
        let text = text.trim();
        let (host, port) = if let Ok(a) = text.parse::<SocketAddr>() {
            (CandidateHost::Ip(a.ip()), Some(a.port()))
        } else if let Ok(ip) = text.parse::<IpAddr>() {
            (CandidateHost::Ip(ip), None)
        } else if text.starts_with('[') || text.matches(':').count() > 1 {
            return Err(format!(
                "`{text}` is not an address (an IPv6 address with a port is written [ADDRESS]:PORT)"
            ));
        } else {
            let (name, port) = match text.split_once(':') {
                Some((name, port)) => {
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| format!("`{port}` is not a port (1 to 65535)"))?;
                    (name, Some(port))
                }
                None => (text, None),
            };
            if !is_host_name(name) {
                return Err(format!("`{text}` is neither an IP address nor a host name"));
            }
            (CandidateHost::Name(name.to_ascii_lowercase()), port)
        };
        if port == Some(0) {
            return Err(format!("`{text}`: port 0 cannot be reached"));
        }
        if let CandidateHost::Ip(ip) = host {
            if let Some(why) = unreachable(ip) {
                return Err(format!("`{ip}` is {why}: no browser can reach it"));
            }
        }
        Ok(ExtraCandidate { host, port })
    }
}

/// Why a browser could never send to `ip`, if it could not.
pub fn unreachable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63, at least
/// one letter somewhere (so that `1.2.3` is not taken for a name).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().any(|b| b.is_ascii_alphabetic())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for ExtraCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (CandidateHost::Ip(ip), Some(p)) => write!(f, "{}", SocketAddr::new(*ip, p)),
            (CandidateHost::Ip(ip), None) => write!(f, "{ip}"),
            (CandidateHost::Name(n), Some(p)) => write!(f, "{n}:{p}"),
            (CandidateHost::Name(n), None) => write!(f, "{n}"),
        }
    }
}

/// An IP network, `ADDRESS/PREFIX` (a lone address: just that address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address (a network is ADDRESS/PREFIX)"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits => n,
                _ => {
                    return Err(format!(
                        "`/{p}` is not a prefix length of an {} network (0 to {bits})",
                        if bits == 32 { "IPv4" } else { "IPv6" }
                    ))
                }
            },
        };
        let network = Network { addr, prefix };
        let masked = network.first();
        if masked != addr {
            return Err(format!(
                "`{text}` has bits set past its prefix: the network is {masked}/{prefix}"
            ));
        }
        Ok(network)
    }

    /// Its first address: `addr` with the bits past the prefix cleared.
    fn first(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    /// Whether `ip` is inside it (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u32::from(n) ^ u32::from(a)) & mask32(self.prefix) == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                (u128::from(n) ^ u128::from(a)) & mask128(self.prefix) == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// Whether `networks` keeps `ip`: none listed keeps every address.
pub fn kept(networks: &[Network], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_are_addresses_or_names_with_an_optional_port() {
        let cases = [
            ("203.0.113.7", CandidateHost::Ip(ip("203.0.113.7")), None),
            (
                "192.168.1.20:8555",
                CandidateHost::Ip(ip("192.168.1.20")),
                Some(8555),
            ),
            ("2001:db8::7", CandidateHost::Ip(ip("2001:db8::7")), None),
            (
                "[2001:db8::7]:8555",
                CandidateHost::Ip(ip("2001:db8::7")),
                Some(8555),
            ),
            ("NAS.lan", CandidateHost::Name("nas.lan".into()), None),
            (
                "host.docker.internal:7878",
                CandidateHost::Name("host.docker.internal".into()),
                Some(7878),
            ),
        ];
        for (text, host, port) in cases {
            let c = ExtraCandidate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((c.host.clone(), c.port), (host, port), "{text}");
            assert_eq!(
                ExtraCandidate::parse(&c.to_string()).unwrap(),
                c,
                "{text} shown as {c}"
            );
        }
    }

    #[test]
    fn bad_candidates_say_why() {
        let cases = [
            ("", "neither an IP address nor a host name"),
            ("1.2.3", "neither"),
            ("1.2.3.4:", "is not a port"),
            ("1.2.3.4:70000", "is not a port"),
            ("nas:0", "port 0"),
            ("1.2.3.4:0", "port 0"),
            ("0.0.0.0", "unspecified"),
            ("[::]:9", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("2001:db8::7:8555x", "is not an address"),
            ("[2001:db8::7]", "is not an address"),
            ("under_score.lan", "neither"),
            ("-bad.lan", "neither"),
            ("http://nas.lan", "is not a port"),
        ];
        for (text, why) in cases {
            let e = ExtraCandidate::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
        let long = format!("{}.lan", "a".repeat(64));
        assert!(ExtraCandidate::parse(&long).is_err(), "a label over 63");
    }

    #[test]
    fn networks_parse_and_contain() {
        let lan = Network::parse("192.168.0.0/16").unwrap();
        assert!(lan.contains(ip("192.168.1.20")));
        assert!(lan.contains(ip("::ffff:192.168.1.20")), "IPv4-mapped");
        assert!(!lan.contains(ip("172.17.0.1")));
        assert!(!lan.contains(ip("2001:db8::1")));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one = Network::parse("10.1.2.3").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::5")));
        assert_eq!(Network::parse("::/0").unwrap().prefix, 0);
        assert!(kept(&[], ip("172.17.0.1")), "no networks: every address");
        assert!(!kept(&[lan, v6], ip("172.17.0.1")));
        assert!(kept(&[lan, v6], ip("192.168.7.7")));
    }

    #[test]
    fn bad_networks_say_why() {
        let cases = [
            ("192.168.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/", "not a prefix length"),
            ("10.0.0.0/-1", "not a prefix length"),
            ("10.0.0.0/x", "not a prefix length"),
            ("lan/24", "not an IP address"),
            ("", "not an IP address"),
            ("192.168.1.5/16", "the network is 192.168.0.0/16"),
            ("2001:db8::1/32", "the network is 2001:db8::/32"),
        ];
        for (text, why) in cases {
            let e = Network::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
