//! Reads through the connection pool, from the primary: the counter, and
//! whether the database is ready.

use std::sync::Arc;
use std::time::Duration;

use mysql::Row;
use mysql::prelude::Queryable;

use super::members::{Members, awaits_primary};
use super::pool::{Lease, Pool};
use super::reply::single_number;
use super::retry::{measured, retrying};
use super::writer::BatchWriter;
use super::{DbError, DbSettings};

pub struct Db {
    members: Arc<Members>,
    pool: Pool,
    /// No retry starts after this much time spent on one call, so a request
    /// is answered well within nginx's proxy_read_timeout.
    retry_budget: Duration,
}

impl Db {
    /// Connects lazily: the app starts even while the database is down.
    pub fn new(settings: &DbSettings) -> Db {
        let members = Arc::new(Members::new(settings));
        Db {
            pool: Pool::new(
                Arc::clone(&members),
                settings.pool_size,
                settings.connect_timeout,
            ),
            members,
            retry_budget: settings.read_timeout,
        }
    }

    /// A writer for one committer, with a connection of its own.
    pub fn batch_writer(&self) -> BatchWriter {
        BatchWriter::new(Arc::clone(&self.members), self.retry_budget)
    }

    /// The global counter.
    pub fn read_hits(&self) -> Result<u64, DbError> {
        self.call("read_hits", |conn| {
            conn.query_first::<Row, _>("CALL read_hits()")
        })
    }

    /// The primary answers, with a majority behind it, and every procedure
    /// the app calls exists.
    pub fn check_ready(&self) -> Result<(), DbError> {
        match self.call("check_ready", |conn| {
            conn.query_first::<Row, _>("CALL check_ready()")
        })? {
            1 => Ok(()),
            other => Err(DbError::UnexpectedReply(format!(
                "check_ready answered {other}: a procedure the app calls is missing"
            ))),
        }
    }

    /// Runs `op` on a pooled connection, retrying the errors the policy
    /// allows. A read that finds its primary gone (but not one that timed
    /// out, which would only wait as long again) is tried once more at once,
    /// on the primary found again: reads change nothing.
    fn call(
        &self,
        name: &'static str,
        op: impl Fn(&mut mysql::Conn) -> mysql::Result<Option<Row>>,
    ) -> Result<u64, DbError> {
        measured(name, || {
            retrying(self.retry_budget, || match self.call_once(name, &op) {
                Err(e) if awaits_primary(&e) && !e.timed_out() => self.call_once(name, &op),
                result => result,
            })
        })
    }

    fn call_once(
        &self,
        name: &'static str,
        op: &impl Fn(&mut mysql::Conn) -> mysql::Result<Option<Row>>,
    ) -> Result<u64, DbError> {
        let mut lease: Lease<'_> = self.pool.checkout().map_err(DbError::Unavailable)?;
        let answer = op(&mut lease.conn)
            .map_err(DbError::from_call)
            .and_then(|row| single_number(name, row));
        match &answer {
            Err(e) if awaits_primary(e) => {
                self.members.lost(lease.generation, e.broke_connection())
            }
            // A broken connection is dropped with its lease, never reused.
            Err(e) if !e.connection_survives() => {}
            _ => self.pool.checkin(lease),
        }
        answer
    }
}
