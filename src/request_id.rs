//! The id that makes a hit idempotent: nginx's `$request_id`, resent unchanged on a retry.

use std::fmt;

/// 32 lowercase hex digits, the shape of nginx's `$request_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts exactly 32 hex digits; anything else is not an id.
    pub fn parse(text: &str) -> Option<RequestId> {
        let text = text.trim();
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| RequestId(text.to_ascii_lowercase()))
    }

    /// A fresh id for a request that did not come with a trusted one.
    pub fn random() -> RequestId {
        let bits: u128 = rand::random();
        RequestId(format!("{bits:032x}"))
    }

    /// SECURITY: only a trusted proxy may name the id; a client that could
    /// reuse another request's id could make hits go uncounted.
    pub fn from_header(header: Option<&str>, peer_is_trusted: bool) -> RequestId {
        header
            .filter(|_| peer_is_trusted)
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::random)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX_ID: &str = "6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c";

    #[test]
    fn a_trusted_proxy_names_the_id() {
        assert_eq!(
            RequestId::from_header(Some(NGINX_ID), true).as_str(),
            NGINX_ID
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_name_the_id() {
        assert_ne!(
            RequestId::from_header(Some(NGINX_ID), false).as_str(),
            NGINX_ID
        );
    }

    #[test]
    fn malformed_ids_are_replaced() {
        for bad in [
            "",
            "abc",
            "6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c0",
            "zz1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c",
            "' OR 1=1 --",
        ] {
            let id = RequestId::from_header(Some(bad), true);
            assert_eq!(id.as_str().len(), 32, "{bad:?}");
            assert_ne!(id.as_str(), bad);
        }
    }

    #[test]
    fn ids_are_lowercase_hex() {
        assert_eq!(
            RequestId::parse("6C1F0A3E9B2D4F8A0B1C2D3E4F5A6B7C")
                .unwrap()
                .as_str(),
            NGINX_ID.to_ascii_lowercase().as_str()
        );
        let random = RequestId::random();
        assert!(RequestId::parse(random.as_str()).is_some());
        assert_ne!(random, RequestId::random(), "fresh ids differ");
    }
}
