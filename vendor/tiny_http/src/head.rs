//! PATCHED (hardening): the request head as bytes in, a checked head or the
//! status to answer out. Pure, so a property test can feed it anything.
//!
//! Upstream read the head line by line as ASCII and closed the connection
//! without an answer on any byte >= 0x80, with no limit on a line's length.

use ascii::AsciiString;

use crate::{HTTPVersion, Header, HeaderField, Method};

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    /// Headers whose values are ASCII.
    pub headers: Vec<Header>,
    /// Headers whose values hold obs-text (bytes 0x80-0xFF, RFC 9110 §5.5),
    /// such as a browser's UTF-8 cookie: kept as bytes.
    pub obs_headers: Vec<(HeaderField, Vec<u8>)>,
}

/// Why a head was refused; every case is answered, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The request line is not `METHOD SP target SP HTTP/1.x`.
    BadRequestLine,
    /// A header line is malformed or holds a control character.
    BadHeader,
    /// The head exceeds the configured size.
    TooLarge,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::BadRequestLine | HeadError::BadHeader => 400,
            HeadError::TooLarge => 431,
        }
    }
}

/// Where the head ends in `buf`: the index just past its empty line, if
/// there is one. Lines end in LF, optionally preceded by CR (RFC 9112 §2.2).
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = buf[from..].iter().position(|&b| b == b'\n') {
        let lf = from + at;
        let next = &buf[lf + 1..];
        if next.first() == Some(&b'\n') {
            return Some(lf + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(lf + 3);
        }
        from = lf + 1;
    }
    None
}

/// Parses a whole head (as delimited by `head_end`, empty line included).
pub(crate) fn parse_head(raw: &[u8]) -> Result<Head, HeadError> {
    let mut lines = raw.split(|&b| b == b'\n').map(strip_cr);
    let request_line = lines.next().flatten().ok_or(HeadError::BadRequestLine)?;
    let (method, path, version) = parse_request_line(request_line)?;

    let mut headers = Vec::new();
    let mut obs_headers = Vec::new();
    for line in lines {
        let line = line.ok_or(HeadError::BadHeader)?;
        if line.is_empty() {
            break;
        }
        let (field, value) = parse_header_line(line)?;
        match AsciiString::from_ascii(value) {
            Ok(value) => headers.push(Header { field, value }),
            // A framing header the body reader would not see is refused.
            Err(_) if is_framing(&field) => return Err(HeadError::BadHeader),
            Err(e) => obs_headers.push((field, e.into_source().to_vec())),
        }
    }
    Ok(Head {
        method,
        path,
        version,
        headers,
        obs_headers,
    })
}

/// Headers that delimit the body; their values must be ASCII.
fn is_framing(field: &HeaderField) -> bool {
    field.equiv("Content-Length") || field.equiv("Transfer-Encoding")
}

/// The line without its CR; `None` when a CR appears anywhere else in it.
fn strip_cr(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.contains(&b'\r')).then_some(line)
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadRequestLine);
    }
    // Visible ASCII only: a target with raw bytes >= 0x80 is not a URI.
    if target.is_empty() || !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(HeadError::BadRequestLine);
    }
    let version = match version {
        b"HTTP/1.0" => HTTPVersion(1, 0),
        // A higher 1.x minor version is processed as 1.1 (RFC 9110 §2.5).
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            HTTPVersion(1, 1)
        }
        _ => return Err(HeadError::BadRequestLine),
    };
    // Both are checked ASCII above, so neither conversion can fail.
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or(HeadError::BadRequestLine)?;
    let path = String::from_utf8(target.to_vec()).map_err(|_| HeadError::BadRequestLine)?;
    Ok((method, path, version))
}

/// `name ":" OWS value OWS`; obs-fold and control characters are refused (RFC 9112 §5).
fn parse_header_line(line: &[u8]) -> Result<(HeaderField, &[u8]), HeadError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::BadHeader)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadHeader);
    }
    let value = trim_ows(value);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HeadError::BadHeader);
    }
    let field = HeaderField::from_bytes(name.to_vec()).map_err(|_| HeadError::BadHeader)?;
    Ok((field, value))
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Head, HeadError> {
        let end = head_end(text).expect("a complete head");
        parse_head(&text[..end])
    }

    #[test]
    fn a_plain_request_parses() {
        let head = parse(b"GET /showcount?x=1 HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/showcount?x=1");
        assert_eq!(head.version, HTTPVersion(1, 1));
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers[0].value.as_str(), "a");
        assert_eq!(head.headers[1].value.as_str(), "");
    }

    #[test]
    fn obs_text_in_a_value_is_kept_as_bytes() {
        let head =
            parse(b"GET / HTTP/1.1\r\nCookie: theme=caf\xc3\xa9; internal_ip=10.0.0.2\r\n\r\n")
                .unwrap();
        assert!(head.headers.is_empty());
        assert_eq!(head.obs_headers.len(), 1);
        assert!(head.obs_headers[0].0.equiv("cookie"));
        assert_eq!(
            head.obs_headers[0].1,
            b"theme=caf\xc3\xa9; internal_ip=10.0.0.2".to_vec()
        );
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let head = parse(b"GET / HTTP/1.0\nHost: a\n\n").unwrap();
        assert_eq!(head.version, HTTPVersion(1, 0));
        assert_eq!(head.headers.len(), 1);
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let cases: [(&[u8], u16); 16] = [
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1 x\r\n\r\n", 400),
            (b"G\xc3T / HTTP/1.1\r\n\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\xff\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: \xffchunked\r\n\r\n",
                400,
            ),
        ];
        for (head, status) in cases {
            let got = parse(head).map(|_| ()).map_err(HeadError::status);
            assert_eq!(got, Err(status), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_end_of_a_head_is_found_whatever_the_line_endings() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nBODY"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nBODY"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

        /// Bytes shaped like a head now and then, so the parser's deeper
        /// branches are reached, not only the request line's first check.
        fn head_like() -> impl Strategy<Value = Vec<u8>> {
            let pieces = prop_oneof![
                Just(b"GET / HTTP/1.1\r\n".to_vec()),
                Just(b"Cookie: a=b\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b": ".to_vec()),
                Just(b" ".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..24),
            ];
            proptest::collection::vec(pieces, 0..12).prop_map(|p| p.concat())
        }

        /// Seeded: the same cases on every run, so a failure reproduces.
        fn runner(cases: u32) -> TestRunner {
            let seed = *b"webcluster-head-parser-property!";
            TestRunner::new_with_rng(
                Config {
                    cases,
                    failure_persistence: None,
                    ..Config::default()
                },
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
            )
        }

        fn check(raw: &[u8]) -> Result<(), TestCaseError> {
            let whole = match head_end(raw) {
                Some(end) => &raw[..end],
                None => raw,
            };
            match parse_head(whole) {
                Ok(head) => {
                    prop_assert!(head.path.bytes().all(|b| (0x21..0x7f).contains(&b)));
                    for header in &head.headers {
                        prop_assert!(!header.value.as_str().contains(['\r', '\n', '\0']));
                    }
                }
                Err(e) => prop_assert!((400..500).contains(&e.status()), "{:?}", e),
            }
            Ok(())
        }

        #[test]
        fn any_bytes_give_a_head_or_a_4xx_and_never_panic() {
            runner(100_000)
                .run(&proptest::collection::vec(any::<u8>(), 0..256), |raw| {
                    check(&raw)
                })
                .unwrap();
            runner(100_000)
                .run(&head_like(), |raw| check(&raw))
                .unwrap();
        }
    }
}
