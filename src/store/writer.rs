//! A committer's own connection to the primary: a batch needs no pool
//! checkout, and no ping while the connection is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::Row;
use mysql::prelude::Queryable;

use super::DbError;
use super::hit::{Hit, HitWriter, hits_json};
use super::members::{Members, PrimaryConn, awaits_primary};
use super::reply::single_number;
use super::retry::{measured, retrying};

/// A committer's connection idle longer than this is pinged before a batch:
/// the server may have restarted meanwhile, and a batch sent on a dead
/// connection would end with an unknown outcome. A busy one is not.
const IDLE_PING: Duration = Duration::from_secs(1);

pub struct BatchWriter {
    members: Arc<Members>,
    conn: Option<PrimaryConn>,
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
    pub fn new(members: Arc<Members>, retry_budget: Duration) -> BatchWriter {
        BatchWriter {
            members,
            conn: None,
            last_used: Instant::now(),
            retry_budget,
        }
    }

    fn call_once(&mut self, batch: &str) -> Result<u64, DbError> {
        let primary = self.connection()?;
        let generation = primary.generation;
        let reply = primary
            .conn
            .exec_first::<Row, _, _>("CALL record_hits(?)", (batch,))
            .map_err(DbError::from_call)
            .and_then(|row| single_number("record_hits", row));
        self.last_used = Instant::now();
        if let Err(e) = &reply {
            if awaits_primary(e) {
                self.members.lost(generation, e.broke_connection());
            }
            if awaits_primary(e) || !e.connection_survives() {
                self.conn = None;
            }
        }
        reply
    }

    /// The open connection to the primary, pinged if it idled; a new one if
    /// it is gone or the primary was lost since it was opened.
    fn connection(&mut self) -> Result<&mut PrimaryConn, DbError> {
        let stale = self.last_used.elapsed() > IDLE_PING;
        let generation = self.members.generation();
        let usable = match self.conn.as_mut() {
            None => false,
            Some(primary) if primary.generation != generation => false,
            Some(primary) => {
                let alive = !stale || primary.conn.ping().is_ok();
                if !alive {
                    self.members.lost(primary.generation, true);
                }
                alive
            }
        };
        if !usable {
            self.conn = None;
        }
        match &mut self.conn {
            Some(primary) => Ok(primary),
            slot => {
                let primary = self
                    .members
                    .connect_primary()
                    .map_err(DbError::Unavailable)?;
                Ok(slot.insert(primary))
            }
        }
    }
}
