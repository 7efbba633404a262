//! A committer's own connection: a batch needs no pool checkout, and no ping
//! while the connection is busy.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, Row};

use super::DbError;
use super::hit::{Hit, HitWriter, hits_json};
use super::pool::CheckoutError;
use super::reply::single_number;
use super::retry::{measured, retrying};

/// A committer's connection idle longer than this is pinged before a batch:
/// the server may have restarted meanwhile, and a batch sent on a dead
/// connection would end with an unknown outcome. A busy one is not.
const IDLE_PING: Duration = Duration::from_secs(1);

pub struct BatchWriter {
    opts: Opts,
    conn: Option<Conn>,
    last_used: Instant,
    retry_budget: Duration,
}

impl HitWriter for BatchWriter {
    /// One `CALL record_hits`, retried whole when the server refused it: the
    /// request ids make a retry count each hit once.
    fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError> {
        let batch = hits_json(hits);
        measured("record_hits", || {
            retrying(self.retry_budget, || self.call_once(&batch))
        })
    }

    /// A call cut short may have left the protocol mid-reply: start afresh.
    fn reset(&mut self) {
        self.conn = None;
    }
}

impl BatchWriter {
    /// Opens nothing yet: the connection is made on first use.
    pub fn new(opts: Opts, retry_budget: Duration) -> BatchWriter {
        BatchWriter {
            opts,
            conn: None,
            last_used: Instant::now(),
            retry_budget,
        }
    }

    fn call_once(&mut self, batch: &str) -> Result<u64, DbError> {
        let conn = self.connection()?;
        let reply = conn
            .exec_first::<Row, _, _>("CALL record_hits(?)", (batch,))
            .map_err(DbError::from_call)
            .and_then(|row| single_number("record_hits", row));
        self.last_used = Instant::now();
        if reply
            .as_ref()
            .err()
            .is_some_and(|e| !e.connection_survives())
        {
            self.conn = None;
        }
        reply
    }

    /// The open connection, pinged if it idled; a new one if it is gone.
    fn connection(&mut self) -> Result<&mut Conn, DbError> {
        let stale = self.last_used.elapsed() > IDLE_PING;
        if let Some(conn) = self.conn.as_mut().filter(|_| stale)
            && conn.ping().is_err()
        {
            self.conn = None;
        }
        match &mut self.conn {
            Some(conn) => Ok(conn),
            slot => {
                let conn = Conn::new(self.opts.clone())
                    .map_err(|e| DbError::Unavailable(CheckoutError::Connect(e)))?;
                Ok(slot.insert(conn))
            }
        }
    }
}
