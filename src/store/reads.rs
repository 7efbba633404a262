//! Reads through the connection pool: the counter, and whether the database is ready.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Opts, Row};

use super::pool::{Lease, Pool};
use super::reply::single_number;
use super::retry::{measured, retrying};
use super::writer::BatchWriter;
use super::{DbError, DbSettings, connect};

pub struct Db {
    opts: Opts,
    pool: Pool,
    /// No retry starts after this much time spent on one call, so a request
    /// is answered well within nginx's proxy_read_timeout.
    retry_budget: Duration,
}

impl Db {
    /// Connects lazily: the app starts even while the database is down.
    pub fn new(settings: &DbSettings) -> Db {
        let opts = connect::options(settings);
        Db {
            pool: Pool::new(opts.clone(), settings.pool_size, settings.connect_timeout),
            opts,
            retry_budget: settings.read_timeout,
        }
    }

    /// A writer for one committer, with a connection of its own.
    pub fn batch_writer(&self) -> BatchWriter {
        BatchWriter::new(self.opts.clone(), self.retry_budget)
    }

    /// The global counter.
    pub fn read_hits(&self) -> Result<u64, DbError> {
        self.call("read_hits", |conn| {
            conn.query_first::<Row, _>("CALL read_hits()")
        })
    }

    /// The database answers and every procedure the app calls exists.
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

    /// Runs `op` on a pooled connection, retrying the errors the policy allows.
    fn call(
        &self,
        name: &'static str,
        op: impl Fn(&mut mysql::Conn) -> mysql::Result<Option<Row>>,
    ) -> Result<u64, DbError> {
        measured(name, || {
            retrying(self.retry_budget, || {
                let mut lease: Lease<'_> = self.pool.checkout().map_err(DbError::Unavailable)?;
                let answer = op(&mut lease.conn)
                    .map_err(DbError::from_call)
                    .and_then(|row| single_number(name, row));
                // A broken connection is dropped with its lease, never reused.
                if answer
                    .as_ref()
                    .err()
                    .is_none_or(DbError::connection_survives)
                {
                    self.pool.checkin(lease);
                }
                answer
            })
        })
    }
}
