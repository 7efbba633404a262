use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::Stack;

/// Connections that arrive together must all be served. Unpatched tiny_http
/// left most of them unread (vendor/README.md); nginx then timed out and
/// marked the replica failed.
#[test]
fn a_burst_of_simultaneous_connections_is_all_served() {
    let mut stack = Stack::up("burst", 1);
    let addr: SocketAddr = format!("{}:8000", stack.instance_ip(1))
        .parse()
        .expect("instance address");

    // Paused, the instance cannot accept: the connections queue up in the
    // kernel and reach tiny_http's accept loop at once when it resumes.
    stack.kill_instance(1, "STOP");
    let connections: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect while paused");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: burst\r\n\r\n")
                .expect("send");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream
        })
        .collect();
    stack.kill_instance(1, "CONT");

    let deadline = Instant::now() + Duration::from_secs(10);
    let unanswered = connections
        .iter()
        .filter(|&stream| {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            stream.set_read_timeout(Some(left)).expect("timeout");
            let mut status = String::new();
            BufReader::new(stream).read_line(&mut status).is_err()
                || !status.starts_with("HTTP/1.1 200")
        })
        .count();
    assert_eq!(
        unanswered, 0,
        "{unanswered} of 60 simultaneous connections got no 200 within 10 s"
    );
}
