//! tiny_http requests in, plain values out: handlers never touch a socket.

use std::borrow::Cow;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tiny_http::{Header, Request, Response};

use crate::client_ip::{ClientIp, TrustedProxies, resolve_client_ip};
use crate::request_id::RequestId;
use crate::sticky;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// The endpoints. Routing is by path first, so a wrong method gets 405, not 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Hit,
    ShowCount,
    Healthz,
    Readyz,
}

impl Route {
    const ALL: [Route; 4] = [Route::Hit, Route::ShowCount, Route::Healthz, Route::Readyz];

    /// The path it answers on.
    pub fn path(self) -> &'static str {
        match self {
            Route::Hit => "/",
            Route::ShowCount => "/showcount",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
        }
    }

    /// The query string is ignored: no endpoint takes parameters.
    pub fn from_path(path: &str) -> Option<Route> {
        let path = without_query(path);
        Route::ALL.into_iter().find(|route| route.path() == path)
    }
}

/// A request target's path, without its query string.
pub fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// Every endpoint answers these methods.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// What a handler needs from a request, already parsed and checked.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub client_ip: IpAddr,
    pub request_id: RequestId,
    /// The instance named by the `internal_ip` cookie, if it holds an address.
    pub pinned: Option<IpAddr>,
    /// How long the request waited for a worker.
    pub queued: Duration,
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
            queued: request.arrived_at().elapsed(),
        }
    }
}

/// A header's value as text; bytes that are not UTF-8 become U+FFFD, so the
/// value fails every later parse instead of being dropped unseen.
fn header_text<'a>(request: &'a Request, name: &str) -> Option<Cow<'a, str>> {
    request.header_bytes(name).map(String::from_utf8_lossy)
}

/// Where a handler's `Reply` goes: once, now or from another thread. The
/// server's responder writes it to the client and logs the request's line.
pub struct Responder(Box<dyn FnOnce(Reply) + Send>);

impl Responder {
    pub fn new(respond: impl FnOnce(Reply) + Send + 'static) -> Responder {
        Responder(Box::new(respond))
    }

    pub fn send(self, reply: Reply) {
        (self.0)(reply)
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// A response as a value. HEAD requests get the same headers; tiny_http drops the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut response =
            Response::from_data(self.body.into_bytes()).with_status_code(self.status);
        let headers = [("Content-Type", "text/plain; charset=utf-8".to_owned())]
            .into_iter()
            .chain(self.headers);
        for (name, value) in headers {
            // Values are built by the app from checked parts, so this never fails in practice.
            match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                Ok(header) => response.add_header(header),
                Err(()) => log::error!("dropped an invalid {name} header"),
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes_ignoring_the_query() {
        let cases = [
            ("/", Some(Route::Hit)),
            ("/?utm=x", Some(Route::Hit)),
            ("/showcount", Some(Route::ShowCount)),
            ("/showcount?x=1", Some(Route::ShowCount)),
            ("/healthz", Some(Route::Healthz)),
            ("/readyz", Some(Route::Readyz)),
            ("/showcount/", None),
            ("//", None),
            ("/SHOWCOUNT", None),
            ("/../etc/passwd", None),
            ("", None),
        ];
        for (path, expected) in cases {
            assert_eq!(Route::from_path(path), expected, "path {path:?}");
        }
    }

    #[test]
    fn a_reply_finds_its_headers_case_insensitively() {
        let reply = Reply::text(405, "x").with_header("Allow", ALLOWED_METHODS);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.header("Set-Cookie"), None);
    }
}
