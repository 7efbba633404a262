//! A fixed-size MySQL connection pool that connects outside its lock, always
//! to the primary.
//!
//! mysql::Pool opens new connections while holding its lock, so with an
//! unreachable database every worker would wait out the others' connect
//! timeouts in turn. Here a checkout costs at most one search for the
//! primary, or one read timeout when an idle connection's server has stopped
//! answering. An idle connection opened before the primary was last lost is
//! not reused.

use std::error::Error as _;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mysql::Conn;

use super::members::{Members, PrimaryConn};
use crate::telemetry::metrics::metrics;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Every connection stayed busy for the whole wait.
    #[error("no free database connection within {0:?}")]
    Exhausted(Duration),
    /// Connecting failed: the database is down, unreachable or refused us.
    #[error("cannot connect to the database: {0}")]
    Connect(mysql::Error),
    /// Members answered, but none as the writable primary of a group with a majority.
    #[error("none of the {0} database member(s) is a writable primary")]
    NoPrimary(usize),
}

pub struct Pool {
    members: Arc<Members>,
    size: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<PrimaryConn>,
    /// Connections checked out or being opened.
    in_use: usize,
    /// Callers waiting for a place.
    waiting: usize,
}

impl State {
    fn publish(&self) {
        metrics().set_pool(self.in_use, self.waiting);
    }
}

impl Pool {
    /// Opens nothing yet, so the app starts while the database is down.
    pub fn new(members: Arc<Members>, size: usize, wait: Duration) -> Pool {
        Pool {
            members,
            size,
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                in_use: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A live connection to the primary: an idle one of the current
    /// generation that answers a ping, or a new one.
    pub fn checkout(&self) -> Result<Lease<'_>, CheckoutError> {
        let slot = self.reserve_slot()?;
        let generation = self.members.generation();
        let idle = {
            let mut state = self.lock();
            state.idle.retain(|c| c.generation == generation);
            state.idle.pop()
        };
        if let Some(mut idle) = idle {
            // A database restart leaves idle connections dead: find out before
            // sending a CALL whose outcome we could not know.
            let error = match idle.conn.ping() {
                Ok(()) => {
                    return Ok(Lease {
                        conn: idle.conn,
                        generation: idle.generation,
                        _slot: slot,
                    });
                }
                Err(error) => error,
            };
            self.members.lost(idle.generation, true);
            // The others went with it; pinging each in turn could cost a read
            // timeout apiece on an unreachable host. Closed outside the lock.
            let dead = std::mem::take(&mut self.lock().idle);
            drop(dead);
            // A server that stopped answering would stall a new connection's
            // handshake for another read timeout.
            if timed_out(&error) {
                return Err(CheckoutError::Connect(error));
            }
        }
        let PrimaryConn { conn, generation } = self.members.connect_primary()?;
        Ok(Lease {
            conn,
            generation,
            _slot: slot,
        })
    }

    /// Returns a healthy connection for reuse. A lease that is simply dropped
    /// closes its connection instead (the way to discard a broken one).
    pub fn checkin(&self, lease: Lease<'_>) {
        self.lock().idle.push(PrimaryConn {
            conn: lease.conn,
            generation: lease.generation,
        });
    }

    fn reserve_slot(&self) -> Result<Slot<'_>, CheckoutError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        if state.in_use >= self.size {
            state.waiting += 1;
            state.publish();
            while state.in_use >= self.size {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    state.waiting -= 1;
                    state.publish();
                    return Err(CheckoutError::Exhausted(self.wait));
                }
                state = self
                    .freed
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.waiting -= 1;
        }
        state.in_use += 1;
        state.publish();
        Ok(Slot { pool: self })
    }

    // The state stays consistent even if a holder panicked: it only pushes or counts.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server did not answer in time, as opposed to having closed the connection.
pub(super) fn timed_out(error: &mysql::Error) -> bool {
    let io = match error {
        mysql::Error::IoError(e) => Some(e),
        // The driver wraps reads in a codec error whose source is the I/O error.
        mysql::Error::CodecError(codec) => {
            codec.source().and_then(|e| e.downcast_ref::<io::Error>())
        }
        _ => None,
    };
    io.is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    })
}

/// A checked-out connection.
pub struct Lease<'a> {
    pub conn: Conn,
    /// The primary's generation it was opened in (`Members::lost`).
    pub generation: u64,
    _slot: Slot<'a>,
}

/// One of the pool's `size` places; freed on drop, whatever happened to the connection.
struct Slot<'a> {
    pool: &'a Pool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.in_use -= 1;
        state.publish();
        drop(state);
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pool_to_closed_port(size: usize, wait: Duration) -> Pool {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = crate::store::DbSettings {
            members: vec![crate::store::Member {
                host: "127.0.0.1".into(),
                port,
            }],
            // Should another test's listener take the freed port meanwhile,
            // the handshake still fails rather than waits forever.
            read_timeout: Duration::from_millis(500),
            ..crate::store::DbSettings::for_tests()
        };
        Pool::new(Arc::new(Members::new(&settings)), size, wait)
    }

    #[test]
    fn a_full_pool_makes_the_next_checkout_wait_then_give_up() {
        let pool = pool_to_closed_port(1, Duration::from_millis(50));
        let held = pool.reserve_slot().expect("the first slot is free");
        assert!(matches!(
            pool.reserve_slot(),
            Err(CheckoutError::Exhausted(_))
        ));
        drop(held);
        assert!(
            pool.reserve_slot().is_ok(),
            "a released slot can be taken again"
        );
    }

    #[test]
    fn only_a_read_timeout_counts_as_an_unresponsive_server() {
        // The codec-wrapped form is covered end to end (tests/e2e/outages.rs).
        let io_error = |kind| mysql::Error::IoError(io::Error::from(kind));
        assert!(timed_out(&io_error(io::ErrorKind::WouldBlock)));
        assert!(timed_out(&io_error(io::ErrorKind::TimedOut)));
        assert!(!timed_out(&io_error(io::ErrorKind::ConnectionReset)));
        assert!(!timed_out(&io_error(io::ErrorKind::UnexpectedEof)));
    }

    #[test]
    fn a_failed_connect_gives_its_slot_back() {
        let pool = pool_to_closed_port(1, Duration::from_millis(50));
        for _ in 0..3 {
            assert!(matches!(pool.checkout(), Err(CheckoutError::Connect(_))));
        }
        assert_eq!(pool.lock().in_use, 0);
    }
}
