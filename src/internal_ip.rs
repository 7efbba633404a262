//! This instance's own address: what the app returns, logs and puts in the sticky cookie.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

/// Which rule chose the address; logged at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `INTERNAL_IP` was set.
    Configured,
    /// The local address the kernel routes to the database host from.
    RouteToDatabase,
    /// This host's name, resolved.
    Hostname,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Configured => "INTERNAL_IP",
            Source::RouteToDatabase => "the route to the database host",
            Source::Hostname => "the host name",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalIp {
    pub addr: IpAddr,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot determine this instance's internal IP; set INTERNAL_IP")]
pub struct NoInternalIp;

/// `INTERNAL_IP`, else the route to the first database member that resolves
/// (a member whose host is gone does not), else the host name.
pub fn choose_internal_ip<'a>(
    configured: Option<IpAddr>,
    db_members: impl IntoIterator<Item = (&'a str, u16)>,
) -> Result<InternalIp, NoInternalIp> {
    choose_with(
        configured,
        || {
            db_members
                .into_iter()
                .find_map(|(host, port)| route_source(host, port))
        },
        hostname_address,
    )
}

fn choose_with(
    configured: Option<IpAddr>,
    route: impl FnOnce() -> Option<IpAddr>,
    hostname: impl FnOnce() -> Option<IpAddr>,
) -> Result<InternalIp, NoInternalIp> {
    let found = configured
        .map(|addr| (addr, Source::Configured))
        .or_else(|| route().map(|addr| (addr, Source::RouteToDatabase)))
        .or_else(|| hostname().map(|addr| (addr, Source::Hostname)));
    found
        .map(|(addr, source)| InternalIp {
            addr: addr.to_canonical(),
            source,
        })
        .ok_or(NoInternalIp)
}

/// The source address of a UDP "connection" to the database: connect() only
/// asks the kernel for a route, no packet is sent.
pub fn route_source(host: &str, port: u16) -> Option<IpAddr> {
    (host, port).to_socket_addrs().ok()?.find_map(|target| {
        let unspecified: IpAddr = match target {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((unspecified, 0)).ok()?;
        socket.connect(target).ok()?;
        Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
    })
}

/// The first address the host's own name resolves to, preferring a non-loopback one.
fn hostname_address() -> Option<IpAddr> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let addrs: Vec<IpAddr> = (name.trim(), 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| !ip.is_loopback())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_configured_address_wins() {
        let got = choose_with(
            Some(ip("10.0.0.7")),
            || Some(ip("10.0.0.8")),
            || Some(ip("10.0.0.9")),
        );
        assert_eq!(
            got.unwrap(),
            InternalIp {
                addr: ip("10.0.0.7"),
                source: Source::Configured
            }
        );
    }

    #[test]
    fn the_route_to_the_database_comes_next() {
        let got = choose_with(None, || Some(ip("10.0.0.8")), || Some(ip("10.0.0.9")));
        assert_eq!(got.unwrap().source, Source::RouteToDatabase);
    }

    #[test]
    fn the_host_name_is_the_last_resort() {
        let got = choose_with(None, || None, || Some(ip("10.0.0.9")));
        assert_eq!(
            got.unwrap(),
            InternalIp {
                addr: ip("10.0.0.9"),
                source: Source::Hostname
            }
        );
    }

    #[test]
    fn no_rule_means_an_error_that_says_what_to_set() {
        let error = choose_with(None, || None, || None).unwrap_err();
        assert!(error.to_string().contains("INTERNAL_IP"));
    }

    #[test]
    fn the_kernel_routes_to_a_loopback_database_from_loopback() {
        assert!(route_source("127.0.0.1", 3306).is_some_and(|ip| ip.is_loopback()));
    }

    #[test]
    fn a_member_that_does_not_resolve_is_passed_over() {
        let members = [("no-such-host.invalid", 3306), ("127.0.0.1", 3306)];
        let got = choose_internal_ip(None, members).unwrap();
        assert_eq!(got.source, Source::RouteToDatabase);
        assert!(got.addr.is_loopback());
    }

    #[test]
    fn an_unresolvable_database_host_gives_no_route() {
        assert_eq!(route_source("no-such-host.invalid", 3306), None);
    }
}
