//! `webcluster healthcheck`: asks this instance's own `/healthz`, so a container
//! image needs no shell or curl for its health check.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why the instance is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("GET http://{0}/healthz failed: {1}")]
    Io(SocketAddr, io::Error),
    #[error("GET http://{0}/healthz answered {1:?}")]
    Status(SocketAddr, String),
}

/// The address to dial for a server listening on `listen`: a wildcard bind is
/// reached over loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One `GET /healthz`; Ok only for a 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let io_err = |e| HealthError::Io(addr, e);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io_err)?;
    // The status line is all that matters; /healthz's whole answer is tiny.
    let mut head = Vec::with_capacity(256);
    stream.take(4096).read_to_end(&mut head).map_err(io_err)?;
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    if is_ok_status(&status_line) {
        Ok(())
    } else {
        Err(HealthError::Status(addr, status_line))
    }
}

fn is_ok_status(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    matches!(
        (parts.next(), parts.next()),
        (Some(version), Some("200")) if version.starts_with("HTTP/1.")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn wildcard_listen_addresses_are_dialled_over_loopback() {
        let v4: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let v6: SocketAddr = "[::]:8000".parse().unwrap();
        let named: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert_eq!(target(v4), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(target(v6), "[::1]:8000".parse().unwrap());
        assert_eq!(target(named), named);
    }

    #[test]
    fn only_a_200_status_line_is_healthy() {
        assert!(is_ok_status("HTTP/1.1 200 OK"));
        assert!(is_ok_status("HTTP/1.0 200"));
        assert!(!is_ok_status("HTTP/1.1 503 Service Unavailable"));
        assert!(!is_ok_status("HTTP/1.1 2000 OK"));
        assert!(!is_ok_status("garbage 200"));
        assert!(!is_ok_status(""));
    }

    fn answer_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            conn.write_all(response).unwrap();
        });
        addr
    }

    #[test]
    fn a_live_server_passes_and_an_unhealthy_one_fails() {
        let timeout = Duration::from_secs(5);
        let ok = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        assert!(check(ok, timeout).is_ok());
        let bad = answer_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\n");
        let err = check(bad, timeout).unwrap_err().to_string();
        assert!(err.contains("500"), "{err}");
    }

    #[test]
    fn nothing_listening_fails_with_the_address() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = check(addr, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
    }
}
