//! The only module that names the stored procedures: one function per procedure,
//! errors sorted into what the caller can do about them, deadlocks retried.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use rand::RngExt;

use crate::config::DbSettings;
use crate::metrics::metrics;
use crate::pool::{CheckoutError, Lease, Pool};
use crate::request_id::RequestId;

/// Server errors after which the CALL is known not to have taken effect, so it may run again.
const RETRYABLE: [u16; 4] = [
    1213, // ER_LOCK_DEADLOCK: the server rolled back the transaction
    1205, // ER_LOCK_WAIT_TIMEOUT: record_hit's handler rolls back the transaction
    // sql/ being re-applied: between DROP and CREATE PROCEDURE, or between
    // REVOKE and GRANT, the server refuses the CALL without running it.
    1305, // ER_SP_DOES_NOT_EXIST
    1370, // ER_PROCACCESS_DENIED_ERROR
];
const MAX_ATTEMPTS: u32 = 4;
/// A committer's connection idle longer than this is pinged before a batch:
/// the server may have restarted meanwhile, and a batch sent on a dead
/// connection would end with an unknown outcome. A busy one is not.
const IDLE_PING: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection: the database is down, unreachable, or refused the account.
    #[error(transparent)]
    Unavailable(CheckoutError),
    /// The connection broke after the CALL was sent: it may or may not have run.
    #[error("connection lost during a call (outcome unknown): {0}")]
    OutcomeUnknown(mysql::Error),
    /// The server refused the CALL.
    #[error("database error {code}: {message}")]
    Server { code: u16, message: String },
    /// The procedure answered something the app does not expect (schema mismatch).
    #[error("unexpected reply from the database: {0}")]
    UnexpectedReply(String),
}

/// One counted request, as `record_hits` stores it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub request_id: RequestId,
    pub client_ip: IpAddr,
    pub internal_ip: IpAddr,
}

/// Writes a batch of hits in one transaction; returns how many were new.
pub trait HitWriter: Send {
    fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError>;
}

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
        let opts = OptsBuilder::new()
            // A lock wait must end, and the server roll the transaction back,
            // before the client gives up on its read: then a 503 means the hit
            // was not counted. Only a connection lost mid-call stays unknown.
            .init(vec![format!(
                "SET SESSION innodb_lock_wait_timeout = {}",
                lock_wait_seconds(settings.read_timeout)
            )])
            .ip_or_hostname(Some(settings.host.as_str()))
            .tcp_port(settings.port)
            .db_name(Some(settings.name.as_str()))
            .user(Some(settings.user.as_str()))
            .pass(Some(settings.password.expose()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(settings.connect_timeout))
            .read_timeout(Some(settings.read_timeout))
            .write_timeout(Some(settings.write_timeout));
        let opts: Opts = opts.into();
        Db {
            pool: Pool::new(opts.clone(), settings.pool_size, settings.connect_timeout),
            opts,
            retry_budget: settings.read_timeout,
        }
    }

    /// A writer for one committer, with a connection of its own (opened on
    /// first use): a batch needs no pool checkout, and no ping while busy.
    pub fn batch_writer(&self) -> BatchWriter {
        BatchWriter {
            opts: self.opts.clone(),
            conn: None,
            last_used: Instant::now(),
            retry_budget: self.retry_budget,
        }
    }

    /// The global counter.
    pub fn read_hits(&self) -> Result<u64, DbError> {
        self.call("read_hits", |conn| {
            conn.query_first::<u64, _>("CALL read_hits()")
        })?
        .ok_or_else(|| DbError::UnexpectedReply("read_hits returned no row".into()))
    }

    /// The database answers and every procedure the app calls exists.
    pub fn check_ready(&self) -> Result<(), DbError> {
        match self.call("check_ready", |conn| {
            conn.query_first::<u64, _>("CALL check_ready()")
        })? {
            Some(1) => Ok(()),
            other => Err(DbError::UnexpectedReply(format!(
                "check_ready answered {other:?}: a procedure the app calls is missing"
            ))),
        }
    }

    /// Runs `op` on a pooled connection, retrying the errors in `RETRYABLE`.
    fn call<T>(
        &self,
        name: &'static str,
        op: impl Fn(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T, DbError> {
        measured(name, || retrying(self.retry_budget, || self.call_once(&op)))
    }

    fn call_once<T>(
        &self,
        op: &impl Fn(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T, DbError> {
        let mut lease: Lease<'_> = self.pool.checkout().map_err(DbError::Unavailable)?;
        match op(&mut lease.conn) {
            Ok(value) => {
                self.pool.checkin(lease);
                Ok(value)
            }
            Err(mysql::Error::MySqlError(e)) => {
                // The server answered, so the connection is still good.
                self.pool.checkin(lease);
                Err(DbError::Server {
                    code: e.code,
                    message: e.message,
                })
            }
            // Dropping the lease closes the broken connection.
            Err(e) => Err(DbError::OutcomeUnknown(e)),
        }
    }
}

/// A committer's own connection to the database.
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
}

impl BatchWriter {
    fn call_once(&mut self, batch: &str) -> Result<u64, DbError> {
        let conn = self.connection()?;
        let reply = conn.exec_first::<u64, _, _>("CALL record_hits(?)", (batch,));
        self.last_used = Instant::now();
        match reply {
            Ok(Some(recorded)) => Ok(recorded),
            Ok(None) => Err(DbError::UnexpectedReply(
                "record_hits returned no row".into(),
            )),
            // The server answered, so the connection is still good.
            Err(mysql::Error::MySqlError(e)) => Err(DbError::Server {
                code: e.code,
                message: e.message,
            }),
            Err(e) => {
                self.conn = None;
                Err(DbError::OutcomeUnknown(e))
            }
        }
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

/// The batch as `record_hits` takes it. Ids are 32 hex digits and addresses
/// are IP text, so nothing needs JSON escaping.
fn hits_json(hits: &[&Hit]) -> String {
    let mut json = String::with_capacity(2 + hits.len() * 96);
    json.push('[');
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            json,
            r#"{{"request_id":"{}","client_ip":"{}","internal_ip":"{}"}}"#,
            hit.request_id, hit.client_ip, hit.internal_ip
        );
    }
    json.push(']');
    json
}

/// Half the read timeout, in whole seconds (the server's unit), at least 1.
/// DB_READ_TIMEOUT_MS is at least 2 s, so this always ends first.
fn lock_wait_seconds(read_timeout: Duration) -> u64 {
    (read_timeout.as_secs() / 2).max(1)
}

/// Runs `call`, recording its time and final error in the metrics.
fn measured<T>(
    name: &'static str,
    call: impl FnOnce() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let started = Instant::now();
    let result = call();
    metrics().db_call(name, started.elapsed(), result.as_ref().err());
    result
}

/// Runs `attempt` again, after a jittered pause, while it fails with an error
/// after which the CALL had no effect and `budget` is not spent. Never
/// retries when the outcome is unknown.
fn retrying<T>(
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let started = std::time::Instant::now();
    let mut tries = 1;
    loop {
        match attempt() {
            Err(DbError::Server { code, message })
                if RETRYABLE.contains(&code)
                    && tries < MAX_ATTEMPTS
                    && started.elapsed() < budget =>
            {
                log::warn!("database error {code} (attempt {tries}), retrying: {message}");
                metrics().db_retry();
                thread::sleep(retry_delay(tries));
                tries += 1;
            }
            result => return result,
        }
    }
}

/// Random jitter, growing with each attempt, so retried transactions do not collide again.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(rand::rng().random_range(5..=20) * u64::from(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_are_jittered_and_grow() {
        for attempt in 1..MAX_ATTEMPTS {
            let delay = retry_delay(attempt);
            let attempt = u64::from(attempt);
            assert!(delay >= Duration::from_millis(5 * attempt));
            assert!(delay <= Duration::from_millis(20 * attempt));
        }
    }

    fn server_error(code: u16) -> DbError {
        DbError::Server {
            code,
            message: format!("error {code}"),
        }
    }

    /// Runs `retrying` over a scripted sequence of results; returns the result and the attempts made.
    fn run_script(mut script: Vec<Result<u32, DbError>>) -> (Result<u32, DbError>, usize) {
        script.reverse();
        let mut attempts = 0;
        let result = retrying(Duration::from_secs(60), || {
            attempts += 1;
            script.pop().unwrap_or_else(|| Err(server_error(1213)))
        });
        (result, attempts)
    }

    #[test]
    fn deadlocks_and_lock_waits_are_retried_until_success() {
        let (result, attempts) = run_script(vec![
            Err(server_error(1213)),
            Err(server_error(1205)),
            Ok(7),
        ]);
        assert_eq!(result.unwrap(), 7);
        assert_eq!(attempts, 3);
    }

    #[test]
    fn a_call_refused_during_a_schema_reapply_is_retried() {
        let (result, attempts) = run_script(vec![
            Err(server_error(1305)),
            Err(server_error(1370)),
            Ok(7),
        ]);
        assert_eq!(result.unwrap(), 7);
        assert_eq!(attempts, 3);
    }

    #[test]
    fn retries_stop_after_the_last_attempt() {
        let (result, attempts) = run_script(vec![]);
        assert!(matches!(result, Err(DbError::Server { code: 1213, .. })));
        assert_eq!(attempts, MAX_ATTEMPTS as usize);
    }

    #[test]
    fn other_server_errors_are_not_retried() {
        let (result, attempts) = run_script(vec![Err(server_error(1062))]);
        assert!(matches!(result, Err(DbError::Server { code: 1062, .. })));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn an_unknown_outcome_is_never_retried() {
        let broken =
            mysql::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let (result, attempts) = run_script(vec![Err(DbError::OutcomeUnknown(broken)), Ok(1)]);
        assert!(matches!(result, Err(DbError::OutcomeUnknown(_))));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn a_lock_wait_ends_before_the_read_timeout() {
        for (read_ms, wait_s) in [(2_000, 1), (3_999, 1), (5_000, 2), (60_000, 30)] {
            let read = Duration::from_millis(read_ms);
            assert_eq!(lock_wait_seconds(read), wait_s, "{read_ms} ms");
            assert!(Duration::from_secs(wait_s) < read, "{read_ms} ms");
        }
    }

    #[test]
    fn no_retry_starts_once_the_budget_is_spent() {
        let mut attempts = 0;
        let result: Result<u32, DbError> = retrying(Duration::ZERO, || {
            attempts += 1;
            Err(server_error(1213))
        });
        assert!(matches!(result, Err(DbError::Server { code: 1213, .. })));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn a_batch_is_a_json_array_of_hits() {
        let hit = Hit {
            request_id: RequestId::parse("6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c").unwrap(),
            client_ip: "2001:db8::7".parse().unwrap(),
            internal_ip: "10.0.0.2".parse().unwrap(),
        };
        assert_eq!(hits_json(&[]), "[]");
        assert_eq!(
            hits_json(&[&hit, &hit]),
            r#"[{"request_id":"6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c","client_ip":"2001:db8::7","internal_ip":"10.0.0.2"},{"request_id":"6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c","client_ip":"2001:db8::7","internal_ip":"10.0.0.2"}]"#
        );
    }
}
