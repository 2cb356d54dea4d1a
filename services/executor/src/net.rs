//! The SSRF guard of HTTP steps: a URL's host is resolved here, every address is
//! checked, and the request connects to exactly the address that was checked (no
//! second resolution an attacker could rebind). Private, loopback, link-local,
//! unique-local, multicast and other special-purpose addresses are refused unless
//! a configured network allows them. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a bad prefix"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether an address is on the public internet (not private, loopback,
/// link-local, shared, documentation, benchmarking, multicast, reserved, …).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()         // 169.254/16, incl. cloud metadata 169.254.169.254
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0                  // 0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || o[0] >= 240) // 240/4 reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00  // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80  // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0  // fec0::/10 site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 can reach private IPv4
        || (s[0] == 0x2002)           // 6to4 embeds arbitrary IPv4
        || (s[0] == 0x2001 && s[1] == 0)) // Teredo
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The name did not resolve.
    #[error("{0} does not resolve")]
    Unresolvable(String),
    /// An address is not public and not allowed.
    #[error(
        "{host} resolves to {ip}, a private, loopback or link-local address that HTTP steps may not reach"
    )]
    Private {
        /// Host name.
        host: String,
        /// The address.
        ip: IpAddr,
    },
}

/// Decides which addresses HTTP steps may connect to.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Vec<Network>,
}

impl Guard {
    /// A guard allowing these extra networks.
    pub fn new(allowed: Vec<Network>) -> Self {
        Self { allowed }
    }

    /// Whether one address may be reached.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }

    /// Resolves `host:port` and returns the addresses to connect to; refuses if
    /// any resolved address is not permitted (a mixed answer is an attack signal).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| Refused::Unresolvable(host.to_owned()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused::Unresolvable(host.to_owned()));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.permits(a.ip())) {
            return Err(Refused::Private { host: host.to_owned(), ip: bad.ip() });
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_not_public() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(bad)), "{bad}");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip(good)), "{good}");
        }
    }

    #[test]
    fn networks_and_the_allow_list() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.0.1")) && !net.contains(ip("11.0.0.1")));
        assert!(Network::parse("127.0.0.1").unwrap().contains(ip("::ffff:127.0.0.1")));
        assert!(Network::parse("10.0.0.0/33").is_err() && Network::parse("nope").is_err());
        let guard = Guard::new(vec![Network::parse("127.0.0.0/8").unwrap()]);
        assert!(guard.permits(ip("127.0.0.1")) && !guard.permits(ip("10.0.0.1")));
        assert!(!Guard::default().permits(ip("127.0.0.1")));
    }

    #[tokio::test]
    async fn resolution_checks_every_address() {
        let guard = Guard::default();
        assert!(matches!(guard.resolve("127.0.0.1", 80).await, Err(Refused::Private { .. })));
        assert!(matches!(guard.resolve("[::1]", 80).await, Err(Refused::Private { .. })));
        assert!(matches!(guard.resolve("localhost", 80).await, Err(Refused::Private { .. })));
        assert!(guard.resolve("93.184.216.34", 443).await.is_ok());
    }
}
