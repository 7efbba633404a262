//! The listening socket, with an accept queue that takes a burst.
//!
//! std listens with a backlog of 128. A burst of new connections (nginx
//! opening its keep-alive pool, clients reconnecting at once) beyond what the
//! accept thread takes meanwhile then waits on SYN retransmissions, or is
//! lost, before the app ever sees it and can answer or refuse it.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Above MAX_CONNECTIONS' default (512); the kernel caps it at somaxconn.
pub const BACKLOG: i32 = 1024;

/// Binds `addr` and listens with `BACKLOG`.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::from(TcpListener::bind(addr)?);
    // Listening again only changes the backlog (Linux).
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn a_burst_of_600_connections_waits_in_the_queue_while_none_is_accepted() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listen");
        let addr = listener.local_addr().expect("addr");
        // std's 128 would leave most of these waiting for a SYN retransmission.
        let connected: Vec<TcpStream> = (0..600)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(connected.len(), 600);
    }
}
