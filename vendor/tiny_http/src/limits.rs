//! PATCHED (hardening): what one client can make the server hold or wait
//! for. Upstream had no timeouts, no cap on a head's size and a thread per
//! connection without a cap (tiny-http issues 56, 143, 221, 290).

use std::time::Duration;

/// Bounds applied to every connection. `Default` gives the values below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be complete this long after its first byte (for
    /// a new connection: after the accept). Default 5 s.
    pub header_timeout: Duration,
    /// A kept-alive connection is closed when no next request starts within
    /// this. Default 60 s.
    pub idle_timeout: Duration,
    /// How long a client may take to take in a response: the rest of an
    /// answer its socket did not take at once must be written within this,
    /// and each blocking write of a larger answer may wait this long. Past
    /// it the connection is closed. Default 10 s.
    pub write_timeout: Duration,
    /// The most bytes a request head (request line and headers) may have;
    /// a larger one is answered 431. Default 40 KiB.
    pub max_head_bytes: usize,
    /// The most connections open at once; one more is answered 503 at
    /// accept and closed, without a thread. Default 512.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 40 * 1024,
            max_connections: 512,
        }
    }
}
