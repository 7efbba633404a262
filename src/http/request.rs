//! tiny_http requests in, plain values out: what a handler needs, parsed and checked.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::client_ip::{ClientIp, TrustedProxies, forwarded_https, resolve_client_ip};
use super::sticky;
use crate::request_id::RequestId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// What a handler needs from a request, already parsed and checked.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub client_ip: IpAddr,
    pub request_id: RequestId,
    /// The instance named by the `internal_ip` cookie, if it holds an address.
    pub pinned: Option<IpAddr>,
    /// It reached the edge over https (a trusted proxy's `X-Forwarded-Proto`).
    pub https: bool,
    /// When its head was read.
    pub arrived: Instant,
}

impl Incoming {
    /// Reads the request line and the headers that matter, applying the trusted-proxy rules.
    pub fn from_request(request: &Request, trusted: &TrustedProxies) -> Incoming {
        // remote_addr is None only on Unix sockets, which the app never listens on.
        let peer = request
            .remote_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let ClientIp {
            addr,
            rejected_header,
        } = resolve_client_ip(peer, header_text(request, "X-Real-IP").as_deref(), trusted);
        if let Some(value) = rejected_header {
            log::warn!("ignored X-Real-IP {value:?} from {peer}: not an IP address");
        }
        Incoming {
            method: match request.method() {
                tiny_http::Method::Get => Method::Get,
                tiny_http::Method::Head => Method::Head,
                _ => Method::Other,
            },
            path: request.url().to_owned(),
            client_ip: addr,
            request_id: RequestId::from_header(
                header_text(request, "X-Request-ID").as_deref(),
                trusted.contains(peer),
            ),
            pinned: sticky::pinned_instance(request.header_bytes("Cookie")),
            https: forwarded_https(
                peer,
                header_text(request, "X-Forwarded-Proto").as_deref(),
                trusted,
            ),
            arrived: request.arrived_at(),
        }
    }
}

impl Incoming {
    /// How long the request has waited since it arrived.
    pub fn queued(&self) -> Duration {
        self.arrived.elapsed()
    }
}

/// A header's value as text; bytes that are not UTF-8 become U+FFFD, so the
/// value fails every later parse instead of being dropped unseen.
fn header_text<'a>(request: &'a Request, name: &str) -> Option<Cow<'a, str>> {
    request.header_bytes(name).map(String::from_utf8_lossy)
}
