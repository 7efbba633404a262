//! The app's `internal_ip` cookie: it tells a client which instance
//! answered. nginx routes on its own `webcluster_route` cookie, not this one.

use std::net::IpAddr;

/// The cookie's name.
pub const COOKIE_NAME: &str = "internal_ip";

/// The instance named by the request's `internal_ip` cookie, when it holds a
/// valid address. The header is bytes: a browser may hold other sites'
/// cookies with UTF-8 in them (RFC 9110 allows bytes 0x80-0xFF in a field).
pub fn pinned_instance(cookie_header: Option<&[u8]>) -> Option<IpAddr> {
    cookie_header?
        .split(|&b| b == b';')
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((pair[..eq].trim_ascii(), &pair[eq + 1..]))
        })
        .find(|(name, _)| *name == COOKIE_NAME.as_bytes())
        .and_then(|(_, value)| {
            let value = value.trim_ascii();
            let value = value.strip_prefix(b"\"").unwrap_or(value);
            let value = value.strip_suffix(b"\"").unwrap_or(value);
            std::str::from_utf8(value).ok()?.parse().ok()
        })
}

/// The `Set-Cookie` value, or `None` when the client already carries this
/// instance's value. `secure`: the request came over https, so the cookie
/// may travel over https only.
pub fn cookie_to_set(
    pinned: Option<IpAddr>,
    instance: IpAddr,
    ttl_seconds: u32,
    secure: bool,
) -> Option<String> {
    if pinned == Some(instance) {
        return None;
    }
    let secure = if secure { "; Secure" } else { "" };
    Some(format!(
        "{COOKIE_NAME}={instance}; Max-Age={ttl_seconds}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let cases: [(Option<&[u8]>, Option<&str>); 12] = [
            (Some(b"internal_ip=10.0.0.2"), Some("10.0.0.2")),
            (Some(b"a=1; internal_ip=10.0.0.3; b=2"), Some("10.0.0.3")),
            (Some(b"a=1;internal_ip=\"10.0.0.4\""), Some("10.0.0.4")),
            (Some(b"internal_ip=fd00::5"), Some("fd00::5")),
            (
                Some(b"theme=caf\xc3\xa9; internal_ip=10.0.0.6"),
                Some("10.0.0.6"),
            ),
            (
                Some(b"\xff\xfe; internal_ip=10.0.0.7; x=\x80"),
                Some("10.0.0.7"),
            ),
            (Some(b"internal_ip=10.0.0.8\xc3\xa9"), None),
            (Some(b"x_internal_ip=10.0.0.2"), None),
            (Some(b"internal_ip=not-an-ip"), None),
            (Some(b"internal_ip="), None),
            (Some(b""), None),
            (None, None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                pinned_instance(header),
                expected.map(ip),
                "header {:?}",
                header.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn a_new_client_gets_the_cookie_with_its_attributes() {
        let set =
            cookie_to_set(None, ip("10.0.0.2"), 300, false).expect("a new client gets a cookie");
        assert_eq!(
            set,
            "internal_ip=10.0.0.2; Max-Age=300; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn over_https_the_cookie_is_secure() {
        let set = cookie_to_set(None, ip("10.0.0.2"), 300, true).unwrap();
        assert_eq!(
            set,
            "internal_ip=10.0.0.2; Max-Age=300; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn the_ttl_comes_from_the_caller() {
        let set = cookie_to_set(None, ip("10.0.0.2"), 60, false).unwrap();
        assert!(set.contains("Max-Age=60;"));
    }

    #[test]
    fn a_client_already_pinned_here_gets_no_new_cookie() {
        assert_eq!(
            cookie_to_set(Some(ip("10.0.0.2")), ip("10.0.0.2"), 300, true),
            None
        );
    }

    #[test]
    fn a_client_pinned_elsewhere_or_forged_is_re_pinned_here() {
        for header in [
            &b"internal_ip=10.0.0.3"[..],
            b"internal_ip=10.9.9.9",
            b"internal_ip=garbage",
        ] {
            let set = cookie_to_set(pinned_instance(Some(header)), ip("10.0.0.2"), 300, false);
            assert!(
                set.unwrap().starts_with("internal_ip=10.0.0.2;"),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }
}
