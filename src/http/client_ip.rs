//! Which address a request came from: X-Real-IP counts only from a trusted proxy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One CIDR block, such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Accepts `ADDR/PREFIX`, or a bare address meaning a single host.
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address"))?;
        let network = network.to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{text:?} has a prefix outside 0-{width}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The `TRUSTED_PROXIES` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list; `none` (or nothing) trusts no proxy.
    fn from_str(text: &str) -> Result<TrustedProxies, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::default());
        }
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, String>>()
            .map(TrustedProxies)
    }
}

/// The client address chosen for a request, and a header value that was refused, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp {
    pub addr: IpAddr,
    /// An X-Real-IP value from a trusted proxy that was not an IP address; worth a log line.
    pub rejected_header: Option<String>,
}

/// SECURITY: a client can send any X-Real-IP; only a trusted proxy's is believed,
/// and only when it parses as an address, so nothing unchecked is stored.
pub fn resolve_client_ip(
    peer: IpAddr,
    real_ip: Option<&str>,
    trusted: &TrustedProxies,
) -> ClientIp {
    let peer = peer.to_canonical();
    let Some(header) = real_ip.filter(|_| trusted.contains(peer)) else {
        return ClientIp {
            addr: peer,
            rejected_header: None,
        };
    };
    match header.trim().parse::<IpAddr>() {
        Ok(addr) => ClientIp {
            addr: addr.to_canonical(),
            rejected_header: None,
        },
        Err(_) => ClientIp {
            addr: peer,
            rejected_header: Some(header.chars().take(64).collect()),
        },
    }
}

/// Whether the request reached the edge over https, as `X-Forwarded-Proto`
/// says. SECURITY: believed only from a trusted proxy; a client that claims
/// https itself is taken at its real scheme, plain HTTP to the app.
pub fn forwarded_https(
    peer: IpAddr,
    forwarded_proto: Option<&str>,
    trusted: &TrustedProxies,
) -> bool {
    forwarded_proto
        .filter(|_| trusted.contains(peer.to_canonical()))
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().expect("valid list")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_match_their_range_only() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("::1/128", "::1", true),
            ("fc00::/7", "fd12::1", true),
            ("fc00::/7", "2001:db8::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.9", true),
            ("127.0.0.0/8", "::1", false),
        ];
        for (cidr, addr, expected) in cases {
            let cidr: Cidr = cidr.parse().unwrap();
            assert_eq!(cidr.contains(ip(addr)), expected, "{cidr} contains {addr}");
        }
    }

    #[test]
    fn malformed_cidr_lists_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/x",
            "1.2.3.4,nope",
        ] {
            assert!(
                bad.parse::<TrustedProxies>().is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn none_trusts_no_proxy() {
        assert!(!proxies("none").contains(ip("127.0.0.1")));
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let trusted = proxies("127.0.0.0/8, 10.0.0.0/8");
        let from_proxy = resolve_client_ip(ip("10.0.0.5"), Some("203.0.113.9"), &trusted);
        assert_eq!(from_proxy.addr, ip("203.0.113.9"));

        let from_outsider = resolve_client_ip(ip("198.51.100.1"), Some("203.0.113.9"), &trusted);
        assert_eq!(
            from_outsider.addr,
            ip("198.51.100.1"),
            "an untrusted peer cannot spoof"
        );
        assert_eq!(from_outsider.rejected_header, None);
    }

    #[test]
    fn without_the_header_the_peer_is_the_client() {
        let got = resolve_client_ip(ip("127.0.0.1"), None, &proxies("127.0.0.0/8"));
        assert_eq!(got.addr, ip("127.0.0.1"));
    }

    #[test]
    fn a_header_that_is_not_an_address_is_never_used() {
        let trusted = proxies("127.0.0.0/8");
        for bad in [
            "', 1); DROP TABLE access_log; --",
            "999.1.1.1",
            "",
            "1.2.3.4, 5.6.7.8",
        ] {
            let got = resolve_client_ip(ip("127.0.0.1"), Some(bad), &trusted);
            assert_eq!(got.addr, ip("127.0.0.1"), "{bad:?} falls back to the peer");
            assert!(got.rejected_header.is_some(), "{bad:?} is reported");
        }
    }

    #[test]
    fn ipv4_mapped_addresses_are_stored_as_ipv4() {
        let got = resolve_client_ip(
            ip("::ffff:127.0.0.1"),
            Some("::ffff:192.0.2.1"),
            &proxies("127.0.0.1"),
        );
        assert_eq!(got.addr, ip("192.0.2.1"));
    }

    #[test]
    fn https_is_believed_only_from_a_trusted_proxy() {
        let trusted = proxies("10.253.0.2");
        let nginx = ip("10.253.0.2");
        assert!(forwarded_https(nginx, Some("https"), &trusted));
        assert!(forwarded_https(nginx, Some(" HTTPS "), &trusted));
        assert!(forwarded_https(
            ip("::ffff:10.253.0.2"),
            Some("https"),
            &trusted
        ));
        for (peer, header) in [
            (nginx, None),
            (nginx, Some("http")),
            (nginx, Some("https, http")),
            (nginx, Some("")),
            (ip("10.253.0.3"), Some("https")),
        ] {
            assert!(
                !forwarded_https(peer, header, &trusted),
                "{peer} with {header:?}"
            );
        }
    }
}
