//! Raw bytes over a socket, for requests no well-behaved client sends.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What came back: the status, if an HTTP answer came at all, its text, and
/// whether the server closed the connection (rather than the read timing out).
#[derive(Debug)]
pub struct Answer {
    pub status: Option<u16>,
    pub text: String,
    pub closed: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .split("\r\n\r\n")
            .next()?
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// Sends `bytes` on a new connection (a server may stop reading early) and
/// reads until the server closes it, or 20 s pass.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let _ = stream.write_all(bytes);
    read_answer(&mut stream)
}

/// Reads until the server closes, or the read timeout passes.
pub fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut out = Vec::new();
    let end = stream.read_to_end(&mut out);
    // An end of stream or a reset is the server closing; a timeout is not.
    let closed =
        !matches!(&end, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    Answer {
        status,
        text,
        closed,
    }
}

/// A GET with `header` (a whole `Name: value` line, any bytes) and `Connection: close`.
pub fn get_with_header(path: &[u8], header: &[u8]) -> Vec<u8> {
    [
        b"GET ".as_slice(),
        path,
        b" HTTP/1.1\r\nHost: hostile\r\n",
        header,
        b"\r\nConnection: close\r\n\r\n",
    ]
    .concat()
}
