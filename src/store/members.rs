//! The database's members (`DB_HOST`: one server, or the members of a Group
//! Replication group) and which of them is the writable primary. Every
//! connection the app opens goes to the primary: writes must, and reads do,
//! so a client reads its own hits.
//!
//! The primary is found by asking each member `CALL check_ready()`, which a
//! member that is not the writable primary of a group with a majority
//! refuses with error 1290. It is looked for again whenever a connection
//! breaks or a member refuses as a non-primary would; each such loss moves
//! the generation on, and connections of an older generation are not reused.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use super::pool::CheckoutError;
use super::{DbError, DbSettings, connect};
use crate::telemetry::metrics::metrics;

/// Server errors that mean "this member is not (or no longer) the writable
/// primary": the statement was refused or rolled back, so it may run again
/// on another member.
pub const NOT_PRIMARY: [u16; 5] = [
    1290, // ER_OPTION_PREVENTS_STATEMENT: super_read_only (a secondary, or one that left its group)
    1836, // ER_READ_ONLY_MODE
    3100, // ER_RUN_HOOK_ERROR: the group refused the commit (the member is leaving or in error)
    3101, // ER_TRANSACTION_ROLLBACK_DURING_COMMIT: the group rolled the commit back
    1053, // ER_SERVER_SHUTDOWN: the member is shutting down
];

/// A member that failed is tried after the others for this long: a host that
/// is gone costs one connect timeout, not one per search.
const RECENT_FAILURE: Duration = Duration::from_secs(2);

/// A member that could not be reached, or did not answer in time (frozen,
/// its host gone, its name no longer resolving), is not tried at all for
/// this long while another member answers: the group is alive without it,
/// and each try could cost a timeout.
const UNREACHED: Duration = Duration::from_secs(15);

/// One member: where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// A connection to the primary of a given generation.
pub struct PrimaryConn {
    pub conn: Conn,
    pub generation: u64,
}

pub struct Members {
    list: Vec<Member>,
    opts: Vec<Opts>,
    state: Mutex<State>,
    generation: AtomicU64,
}

struct State {
    primary: Option<usize>,
    /// The last member seen as primary, to tell a failover from a reconnect.
    last_primary: Option<usize>,
    failed_at: Vec<Option<Failure>>,
}

#[derive(Clone, Copy)]
struct Failure {
    at: Instant,
    /// It was not reached, or did not answer in time, as opposed to
    /// answering that it is not the primary.
    unreached: bool,
}

impl Members {
    pub fn new(settings: &DbSettings) -> Members {
        let opts = settings
            .members
            .iter()
            .map(|member| connect::options(settings, member))
            .collect();
        Members {
            list: settings.members.clone(),
            opts,
            state: Mutex::new(State {
                primary: None,
                last_primary: None,
                failed_at: vec![None; settings.members.len()],
            }),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation connections are opened in now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A connection to the writable primary: the one known, else the first
    /// member that says it is. With one member, that member, unasked.
    pub fn connect_primary(&self) -> Result<PrimaryConn, CheckoutError> {
        let generation = self.generation();
        let mut last_error = CheckoutError::NoPrimary(self.list.len());
        let mut another_answered = false;
        for i in self.search_order() {
            if another_answered && self.unreached_lately(i) {
                continue;
            }
            let mut conn = match Conn::new(self.opts[i].clone()) {
                Ok(conn) => conn,
                // A refusal at login (offline mode, say) is an answer.
                Err(e @ mysql::Error::MySqlError(_)) => {
                    self.failed(i, false);
                    another_answered = true;
                    last_error = CheckoutError::Connect(e);
                    continue;
                }
                Err(e) => {
                    self.failed(i, true);
                    last_error = CheckoutError::Connect(e);
                    continue;
                }
            };
            if self.list.len() > 1 {
                match is_primary(&mut conn) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.failed(i, false);
                        another_answered = true;
                        last_error = CheckoutError::NoPrimary(self.list.len());
                        continue;
                    }
                    Err(e) => {
                        self.failed(i, true);
                        last_error = CheckoutError::Connect(e);
                        continue;
                    }
                }
            }
            self.found(i, generation);
            return Ok(PrimaryConn { conn, generation });
        }
        Err(last_error)
    }

    /// The primary of `generation` failed a call as a lost primary would
    /// (`unreached`: its connection broke, rather than it refusing): the next
    /// connection looks for it again.
    pub fn lost(&self, generation: u64, unreached: bool) {
        let mut state = self.lock();
        if self.generation() == generation {
            if let Some(i) = state.primary.take() {
                state.failed_at[i] = Some(Failure {
                    at: Instant::now(),
                    unreached,
                });
                log::warn!("lost the database primary {}: looking for it", self.list[i]);
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The primary first, then members that did not fail lately, then the rest.
    fn search_order(&self) -> Vec<usize> {
        let state = self.lock();
        let recent = |i: usize| state.failed_at[i].is_some_and(|f| f.at.elapsed() < RECENT_FAILURE);
        let mut order: Vec<usize> = state.primary.into_iter().collect();
        order.extend((0..self.list.len()).filter(|&i| Some(i) != state.primary && !recent(i)));
        order.extend((0..self.list.len()).filter(|&i| Some(i) != state.primary && recent(i)));
        order
    }

    fn failed(&self, i: usize, unreached: bool) {
        self.lock().failed_at[i] = Some(Failure {
            at: Instant::now(),
            unreached,
        });
    }

    fn unreached_lately(&self, i: usize) -> bool {
        self.lock().failed_at[i].is_some_and(|f| f.unreached && f.at.elapsed() < UNREACHED)
    }

    fn found(&self, i: usize, generation: u64) {
        let mut state = self.lock();
        state.failed_at[i] = None;
        if state.primary == Some(i) || self.generation() != generation {
            return;
        }
        state.primary = Some(i);
        if state.last_primary.is_some_and(|last| last != i) {
            metrics().db_failover();
            log::warn!("the database primary is now {}", self.list[i]);
        } else if self.list.len() > 1 {
            log::info!("the database primary is {}", self.list[i]);
        }
        state.last_primary = Some(i);
        metrics().set_db_primary(&self.list[i].to_string());
    }

    // The state stays consistent even if a holder panicked: plain fields only.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `conn`'s member is the writable primary: `check_ready` refuses
/// with a NOT_PRIMARY error on any other.
fn is_primary(conn: &mut Conn) -> Result<bool, mysql::Error> {
    match conn.query_drop("CALL check_ready()") {
        Ok(()) => Ok(true),
        Err(mysql::Error::MySqlError(e)) if NOT_PRIMARY.contains(&e.code) => Ok(false),
        // Another refusal (procedures not applied yet, say) is for
        // check_ready's own callers to report: the member is writable.
        Err(mysql::Error::MySqlError(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Parses `DB_HOST`: `host[:port]`, comma-separated; `[v6]:port` for an IPv6
/// address with a port. A member without a port takes `default_port`.
pub fn parse_members(text: &str, default_port: u16) -> Result<Vec<Member>, String> {
    let members = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| parse_member(part, default_port))
        .collect::<Result<Vec<Member>, String>>()?;
    if members.is_empty() {
        return Err("no member given".into());
    }
    for (i, member) in members.iter().enumerate() {
        if members[..i].contains(member) {
            return Err(format!("{member} is named twice"));
        }
    }
    Ok(members)
}

fn parse_member(part: &str, default_port: u16) -> Result<Member, String> {
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{part:?} has no closing ]"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{part:?} is not [address]:port")),
        }
    } else if part.parse::<std::net::Ipv6Addr>().is_ok() {
        (part, None)
    } else {
        match part.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (part, None),
        }
    };
    let valid_host = host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !valid_host {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => default_port,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?} is not a port"))?,
    };
    Ok(Member {
        host: host.to_owned(),
        port,
    })
}

/// Whether a failed call means the primary is gone or no longer primary, so
/// the call may run again once a primary answers.
pub fn awaits_primary(error: &DbError) -> bool {
    match error {
        DbError::Unavailable(_) | DbError::OutcomeUnknown(_) => true,
        DbError::Server { code, .. } => NOT_PRIMARY.contains(code),
        DbError::UnexpectedReply(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(host: &str, port: u16) -> Member {
        Member {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn one_host_or_a_list_of_members() {
        let cases = [
            ("db", vec![member("db", 3306)]),
            ("127.0.0.1", vec![member("127.0.0.1", 3306)]),
            (
                "db-1,db-2:3307, db-3",
                vec![
                    member("db-1", 3306),
                    member("db-2", 3307),
                    member("db-3", 3306),
                ],
            ),
            (
                "10.0.0.1:13306,10.0.0.2:13316",
                vec![member("10.0.0.1", 13306), member("10.0.0.2", 13316)],
            ),
            ("::1", vec![member("::1", 3306)]),
            (
                "[fd00::5]:3307,[::1]",
                vec![member("fd00::5", 3307), member("::1", 3306)],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_members(text, 3306).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_lists_are_refused_with_a_reason() {
        for bad in [
            "",
            " , ",
            "db;DROP",
            "db:0",
            "db:70000",
            "db:x",
            "[::1",
            "db,db",
            "db:3306,db",
        ] {
            assert!(parse_members(bad, 3306).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn lost_connections_and_non_primary_refusals_await_a_primary() {
        let refused = |code| DbError::Server {
            code,
            message: String::new(),
        };
        assert!(awaits_primary(&refused(1290)));
        assert!(awaits_primary(&refused(3101)));
        assert!(awaits_primary(&DbError::OutcomeUnknown(
            mysql::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        )));
        assert!(!awaits_primary(&refused(1062)));
        assert!(!awaits_primary(&DbError::UnexpectedReply("x".into())));
    }

    #[test]
    fn the_search_tries_the_primary_then_members_that_did_not_just_fail() {
        let settings = DbSettings {
            members: parse_members("10.0.0.1,10.0.0.2,10.0.0.3", 3306).unwrap(),
            ..DbSettings::for_tests()
        };
        let members = Members::new(&settings);
        assert_eq!(members.search_order(), vec![0, 1, 2]);
        members.failed(0, false);
        assert_eq!(members.search_order(), vec![1, 2, 0]);
        members.found(2, members.generation());
        assert_eq!(members.search_order(), vec![2, 1, 0]);
        let generation = members.generation();
        members.lost(generation, true);
        assert_eq!(members.generation(), generation + 1);
        assert_eq!(members.search_order(), vec![1, 0, 2]);
        assert!(members.unreached_lately(2));
        // A loss reported for an older generation changes nothing.
        members.lost(generation, true);
        assert_eq!(members.generation(), generation + 1);
    }
}
