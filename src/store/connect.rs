//! How to reach MySQL: the settings, and the driver options built from them.

use std::fmt;
use std::time::Duration;

use mysql::{Opts, OptsBuilder};

use super::members::Member;

/// How to reach MySQL.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `DB_HOST` (with `DB_PORT` for members named without a port): one
    /// server, or the members of a group.
    pub members: Vec<Member>,
    pub name: String,
    pub user: String,
    pub password: Secret,
    /// Connections for reads (`/showcount`, `/readyz`); hits go through the committers.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// `DB_FAILOVER_WAIT_MS`: how long hits are held while no primary answers.
    pub failover_wait: Duration,
}

#[cfg(test)]
impl DbSettings {
    /// Loopback, short waits: for tests that build the store without config.
    pub fn for_tests() -> DbSettings {
        DbSettings {
            members: vec![Member {
                host: "127.0.0.1".into(),
                port: 3306,
            }],
            name: "webcluster".into(),
            user: "webcluster_app".into(),
            password: Secret::default(),
            pool_size: 2,
            connect_timeout: Duration::from_millis(500),
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            failover_wait: Duration::ZERO,
        }
    }
}

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(password: String) -> Secret {
        Secret(password)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The driver's options for one member: TCP only, every wait bounded.
pub fn options(settings: &DbSettings, member: &Member) -> Opts {
    OptsBuilder::new()
        // A lock wait must end, and the server roll the transaction back,
        // before the client gives up on its read: then a 503 means the hit
        // was not counted. Only a connection lost mid-call stays unknown.
        .init(vec![format!(
            "SET SESSION innodb_lock_wait_timeout = {}",
            lock_wait_seconds(settings.read_timeout)
        )])
        .ip_or_hostname(Some(member.host.as_str()))
        .tcp_port(member.port)
        .db_name(Some(settings.name.as_str()))
        .user(Some(settings.user.as_str()))
        .pass(Some(settings.password.expose()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(settings.connect_timeout))
        .read_timeout(Some(settings.read_timeout))
        .write_timeout(Some(settings.write_timeout))
        .into()
}

/// Half the read timeout, in whole seconds (the server's unit), at least 1.
/// DB_READ_TIMEOUT_MS is at least 2 s, so this always ends first.
fn lock_wait_seconds(read_timeout: Duration) -> u64 {
    (read_timeout.as_secs() / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_wait_ends_before_the_read_timeout() {
        for (read_ms, wait_s) in [(2_000, 1), (3_999, 1), (5_000, 2), (60_000, 30)] {
            let read = Duration::from_millis(read_ms);
            assert_eq!(lock_wait_seconds(read), wait_s, "{read_ms} ms");
            assert!(Duration::from_secs(wait_s) < read, "{read_ms} ms");
        }
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        assert!(!format!("{:?}", Secret::new("hunter2".into())).contains("hunter2"));
    }
}
