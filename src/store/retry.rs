//! The retry policy: which refusals mean the CALL did not run, so it may run
//! again, and how long to keep trying. Every call's time and final error go
//! to the metrics here.

use std::thread;
use std::time::{Duration, Instant};

use rand::RngExt;

use super::DbError;
use crate::telemetry::metrics::metrics;

/// Server errors after which the CALL is known not to have taken effect, so it may run again.
pub(super) const RETRYABLE: [u16; 4] = [
    1213, // ER_LOCK_DEADLOCK: the server rolled back the transaction
    1205, // ER_LOCK_WAIT_TIMEOUT: record_hits' exit handler rolls back the transaction
    // sql/ being re-applied: between DROP and CREATE PROCEDURE, or between
    // REVOKE and GRANT, the server refuses the CALL without running it.
    1305, // ER_SP_DOES_NOT_EXIST
    1370, // ER_PROCACCESS_DENIED_ERROR
];
const MAX_ATTEMPTS: u32 = 4;

/// Runs `call`, recording its time and final error in the metrics.
pub fn measured<T>(
    name: &'static str,
    call: impl FnOnce() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let started = Instant::now();
    let result = call();
    metrics().db_call(
        name,
        started.elapsed(),
        result.as_ref().err().map(DbError::kind),
    );
    result
}

/// Runs `attempt` again, after a jittered pause, while it fails with an error
/// after which the CALL had no effect and `budget` is not spent. Never
/// retries when the outcome is unknown.
pub fn retrying<T>(
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let started = Instant::now();
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
    fn no_retry_starts_once_the_budget_is_spent() {
        let mut attempts = 0;
        let result: Result<u32, DbError> = retrying(Duration::ZERO, || {
            attempts += 1;
            Err(server_error(1213))
        });
        assert!(matches!(result, Err(DbError::Server { code: 1213, .. })));
        assert_eq!(attempts, 1);
    }
}
