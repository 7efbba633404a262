//! What can go wrong with a database call, sorted by what the caller can do about it.

use super::pool::CheckoutError;

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

impl DbError {
    /// The error's kind, as the metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Unavailable(_) => "unavailable",
            DbError::OutcomeUnknown(_) => "outcome_unknown",
            DbError::Server { .. } => "refused",
            DbError::UnexpectedReply(_) => "unexpected_reply",
        }
    }

    /// Sorts a driver error from a call that was sent: the server's own
    /// answer leaves the connection usable, anything else broke it mid-call.
    pub(super) fn from_call(error: mysql::Error) -> DbError {
        match error {
            mysql::Error::MySqlError(e) => DbError::Server {
                code: e.code,
                message: e.message,
            },
            other => DbError::OutcomeUnknown(other),
        }
    }

    /// The server did not answer in time: trying again at once would only
    /// wait as long again.
    pub fn timed_out(&self) -> bool {
        match self {
            DbError::OutcomeUnknown(e) | DbError::Unavailable(CheckoutError::Connect(e)) => {
                super::pool::timed_out(e)
            }
            _ => false,
        }
    }

    /// The server refused the CALL in a way that means it had no effect
    /// (the retry policy's errors: deadlock, lock wait, schema re-apply).
    pub fn had_no_effect(&self) -> bool {
        matches!(self, DbError::Server { code, .. } if super::retry::RETRYABLE.contains(code))
    }

    /// The connection broke or could not be made, as opposed to the server
    /// answering with a refusal.
    pub fn broke_connection(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::OutcomeUnknown(_))
    }

    /// Whether the connection it came from is still usable.
    pub(super) fn connection_survives(&self) -> bool {
        matches!(self, DbError::Server { .. } | DbError::UnexpectedReply(_))
    }
}
