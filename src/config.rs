//! Settings, read once from environment variables and validated before anything starts.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::http::client_ip::TrustedProxies;
use crate::http::server::ConnectionLimits;
use crate::store::members::parse_members;
use crate::store::{DbSettings, Member, Secret};
use crate::telemetry::logging::LogSettings;

const DEFAULT_WORKERS: usize = 8;
const DEFAULT_COMMITTERS: usize = 1;

/// Everything the app can be configured with. Each variable is a row of the README's table.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`: where tiny_http listens.
    pub listen_addr: SocketAddr,
    /// `WORKERS`: request-handling threads. They parse, route and answer; a
    /// hit is handed to the committer and its worker goes on, so a few serve
    /// any number of connections.
    pub workers: usize,
    /// `HIT_BATCH_MAX`: the most hits one commit records; 1 commits each alone.
    pub hit_batch_max: usize,
    /// `HIT_COMMITTERS`: batches in flight at once, each on its own connection.
    pub hit_committers: usize,
    pub db: DbSettings,
    /// `LOG_DIR`, `LOG_LEVEL`, `LOG_MAX_BYTES`, `LOG_FILES`.
    pub log: LogSettings,
    /// Where `GET /metrics` is served; `None` when METRICS_ADDR is `off`.
    pub metrics_addr: Option<SocketAddr>,
    /// `COOKIE_TTL_SECONDS`: Max-Age of the sticky cookie.
    pub cookie_ttl_seconds: u32,
    /// `TRUSTED_PROXIES`: peers whose X-Real-IP, X-Request-ID and X-Forwarded-Proto are believed.
    pub trusted_proxies: TrustedProxies,
    /// `INTERNAL_IP`: overrides the detected internal address.
    pub internal_ip: Option<IpAddr>,
    /// `SHUTDOWN_TIMEOUT_MS`: the longest a drain after SIGTERM, SIGINT or
    /// SIGHUP may take, workers and committers together.
    pub shutdown_timeout: Duration,
    pub connections: ConnectionLimits,
    /// `QUEUE_TIMEOUT_MS`: a request that waited longer than this for a
    /// worker, or a hit for its batch, is answered 503 without touching the
    /// database.
    pub queue_timeout: Duration,
}

/// A setting that cannot be used. Startup stops with this line and exit status 2.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::read(&Env::new(&lookup))
    }

    /// Every variable the app reads, with the value it takes (its default
    /// when unset; a password only as `(set)`): what `webcluster config` prints.
    pub fn describe(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let env = Env::new(&lookup);
        Config::read(&env)?;
        Ok(env.seen.into_inner())
    }

    fn read(env: &Env<'_>) -> Result<Config, ConfigError> {
        let workers = env.number("WORKERS", DEFAULT_WORKERS, 1, 1024)?;
        Ok(Config {
            listen_addr: env.listen_addr()?,
            workers,
            hit_batch_max: env.number("HIT_BATCH_MAX", 256, 1, 10_000)?,
            hit_committers: env.number("HIT_COMMITTERS", DEFAULT_COMMITTERS, 1, 64)?,
            db: DbSettings {
                members: env.members()?,
                name: env.identifier("DB_NAME", "webcluster")?,
                user: env.identifier("DB_USER", "webcluster_app")?,
                password: env.password()?,
                // Reads only (/showcount, /readyz): hits go through the committers.
                pool_size: env.number("DB_POOL_SIZE", 4, 1, 1024)?,
                connect_timeout: env.millis("DB_CONNECT_TIMEOUT_MS", 2_000)?,
                // At least 2 s: the server's lock wait (half of it, in whole
                // seconds) must end before the read does.
                read_timeout: env
                    .number("DB_READ_TIMEOUT_MS", 5_000, 2_000, 3_600_000)
                    .map(Duration::from_millis)?,
                write_timeout: env.millis("DB_WRITE_TIMEOUT_MS", 5_000)?,
                // Long enough for a measured failover (docs/design.md), well
                // within nginx's proxy_read_timeout (30 s).
                failover_wait: env
                    .number("DB_FAILOVER_WAIT_MS", 15_000, 0, 3_600_000)
                    .map(Duration::from_millis)?,
            },
            log: LogSettings {
                dir: PathBuf::from(env.text("LOG_DIR", "logs")),
                level: env.parsed(
                    "LOG_LEVEL",
                    "info",
                    "one of off, error, warn, info, debug, trace",
                )?,
                max_bytes: env.number("LOG_MAX_BYTES", 10 * 1024 * 1024, 4096, 1 << 40)?,
                files: env.number("LOG_FILES", 5, 0, 100)?,
            },
            metrics_addr: match env.get("METRICS_ADDR").as_deref() {
                Some("off") => {
                    env.saw("METRICS_ADDR", "off");
                    None
                }
                _ => Some(env.parsed(
                    "METRICS_ADDR",
                    "0.0.0.0:9100",
                    "an address like 0.0.0.0:9100, or off",
                )?),
            },
            cookie_ttl_seconds: env.number("COOKIE_TTL_SECONDS", 300, 1, 31_536_000)?,
            trusted_proxies: env.parsed(
                "TRUSTED_PROXIES",
                "127.0.0.0/8,::1/128",
                "a comma-separated CIDR list",
            )?,
            internal_ip: match env.get("INTERNAL_IP") {
                None => {
                    env.saw("INTERNAL_IP", "(detected)");
                    None
                }
                Some(_) => Some(env.parsed("INTERNAL_IP", "", "an IP address")?),
            },
            shutdown_timeout: env.millis("SHUTDOWN_TIMEOUT_MS", 10_000)?,
            connections: ConnectionLimits {
                header_timeout: env.millis("HEADER_TIMEOUT_MS", 5_000)?,
                idle_timeout: env.millis("IDLE_TIMEOUT_MS", 60_000)?,
                write_timeout: env.millis("WRITE_TIMEOUT_MS", 10_000)?,
                // Above nginx's own head limit (4 buffers of 8 KiB), so
                // whatever nginx forwards fits.
                max_header_bytes: env.number("MAX_HEADER_BYTES", 40_960, 1_024, 1_048_576)?,
                max_connections: env.number("MAX_CONNECTIONS", 512, 1, 65_536)?,
            },
            queue_timeout: env.millis("QUEUE_TIMEOUT_MS", 2_000)?,
        })
    }
}

/// `LISTEN_ADDR` alone: the health check needs nothing else, not even a password.
pub fn listen_addr_from_env() -> Result<SocketAddr, ConfigError> {
    Env::new(&|name: &str| std::env::var(name).ok()).listen_addr()
}

/// The environment seen through a lookup function; empty values count as
/// unset. It remembers each variable read and the value taken.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    seen: RefCell<Vec<(&'static str, String)>>,
}

impl<'a> Env<'a> {
    fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env {
            lookup,
            seen: RefCell::new(Vec::new()),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn saw(&self, name: &'static str, value: &str) {
        self.seen.borrow_mut().push((name, value.to_owned()));
    }

    fn text(&self, name: &'static str, default: &str) -> String {
        let value = self.get(name).unwrap_or_else(|| default.to_owned());
        self.saw(name, &value);
        value
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let raw = self.text(name, default);
        raw.parse().map_err(|_| ConfigError {
            variable: name,
            problem: format!("{raw:?} is not {expected}"),
        })
    }

    fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.parsed(
            "LISTEN_ADDR",
            "0.0.0.0:8000",
            "an address like 0.0.0.0:8000",
        )
    }

    fn number<T>(&self, name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a whole number from {min} to {max}");
        let value: T = self.parsed(name, &default.to_string(), &expected)?;
        if value < min || value > max {
            return Err(ConfigError {
                variable: name,
                problem: format!("{value} is not {expected}"),
            });
        }
        Ok(value)
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(name, default, 1, 3_600_000)
            .map(Duration::from_millis)
    }

    /// `DB_HOST`: one `host[:port]`, or a comma-separated list of the
    /// group's members; `DB_PORT` for those named without a port.
    fn members(&self) -> Result<Vec<Member>, ConfigError> {
        let port = self.number("DB_PORT", 3306, 1, 65535)?;
        let text = self.text("DB_HOST", "127.0.0.1");
        parse_members(&text, port).map_err(|problem| ConfigError {
            variable: "DB_HOST",
            problem: format!("{text:?}: {problem}"),
        })
    }

    fn identifier(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.text(name, default);
        let valid = value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ConfigError {
                variable: name,
                problem: format!("{value:?} must be 1-64 letters, digits or underscores"),
            });
        }
        Ok(value)
    }

    /// `DB_PASSWORD`, or the contents of `DB_PASSWORD_FILE` (Docker secrets); not both.
    fn password(&self) -> Result<Secret, ConfigError> {
        // Passwords are not trimmed: spaces may be part of them.
        let inline = (self.lookup)("DB_PASSWORD").filter(|v| !v.is_empty());
        let file = self.get("DB_PASSWORD_FILE");
        self.saw("DB_PASSWORD", if inline.is_some() { "(set)" } else { "" });
        self.saw("DB_PASSWORD_FILE", file.as_deref().unwrap_or(""));
        match (inline, file) {
            (Some(_), Some(_)) => Err(ConfigError {
                variable: "DB_PASSWORD_FILE",
                problem: "set DB_PASSWORD or DB_PASSWORD_FILE, not both".into(),
            }),
            (Some(password), None) => Ok(Secret::new(password)),
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map(|text| Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| ConfigError {
                    variable: "DB_PASSWORD_FILE",
                    problem: format!("cannot read {path}: {e}"),
                }),
            (None, None) => Ok(Secret::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = config_from(&[]).expect("defaults are valid");
        assert_eq!(config.listen_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(config.workers, DEFAULT_WORKERS);
        assert_eq!(config.hit_batch_max, 256);
        assert_eq!(config.hit_committers, DEFAULT_COMMITTERS);
        assert_eq!(config.db.pool_size, 4, "reads only");
        assert_eq!(
            config.db.members,
            vec![Member {
                host: "127.0.0.1".into(),
                port: 3306
            }]
        );
        assert_eq!(config.db.failover_wait, Duration::from_secs(15));
        assert_eq!(config.db.name, "webcluster");
        assert_eq!(config.db.user, "webcluster_app");
        assert_eq!(config.db.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.cookie_ttl_seconds, 300);
        assert_eq!(config.log.level, log::LevelFilter::Info);
        assert_eq!(config.log.max_bytes, 10 * 1024 * 1024);
        assert_eq!(config.log.files, 5);
        assert_eq!(config.metrics_addr, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(config.internal_ip, None);
        assert_eq!(config.connections.header_timeout, Duration::from_secs(5));
        assert_eq!(config.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.connections.max_header_bytes, 40_960);
        assert_eq!(config.connections.max_connections, 512);
        assert_eq!(config.queue_timeout, Duration::from_secs(2));
        assert!(
            config
                .trusted_proxies
                .contains("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn every_setting_is_read_from_its_variable() {
        let config = config_from(&[
            ("LISTEN_ADDR", "127.0.0.2:9000"),
            ("WORKERS", "4"),
            ("HIT_BATCH_MAX", "1"),
            ("HIT_COMMITTERS", "3"),
            ("DB_HOST", "db"),
            ("DB_PORT", "3307"),
            ("DB_NAME", "counter"),
            ("DB_USER", "reader"),
            ("DB_PASSWORD", "s3cret"),
            ("DB_POOL_SIZE", "8"),
            ("DB_CONNECT_TIMEOUT_MS", "100"),
            ("DB_READ_TIMEOUT_MS", "2500"),
            ("DB_WRITE_TIMEOUT_MS", "300"),
            ("DB_FAILOVER_WAIT_MS", "4000"),
            ("LOG_DIR", "/var/log/app"),
            ("LOG_LEVEL", "debug"),
            ("COOKIE_TTL_SECONDS", "60"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
            ("INTERNAL_IP", "10.1.2.3"),
            ("SHUTDOWN_TIMEOUT_MS", "500"),
            ("HEADER_TIMEOUT_MS", "700"),
            ("IDLE_TIMEOUT_MS", "800"),
            ("WRITE_TIMEOUT_MS", "900"),
            ("MAX_HEADER_BYTES", "2048"),
            ("MAX_CONNECTIONS", "64"),
            ("QUEUE_TIMEOUT_MS", "1500"),
            ("LOG_MAX_BYTES", "65536"),
            ("LOG_FILES", "2"),
            ("METRICS_ADDR", "127.0.0.2:9101"),
        ])
        .expect("valid settings");
        assert_eq!(config.listen_addr, "127.0.0.2:9000".parse().unwrap());
        assert_eq!(config.workers, 4);
        assert_eq!(config.hit_batch_max, 1);
        assert_eq!(config.hit_committers, 3);
        assert_eq!(
            config.db.members,
            vec![Member {
                host: "db".into(),
                port: 3307
            }]
        );
        assert_eq!(config.db.failover_wait, Duration::from_millis(4000));
        assert_eq!(config.db.name, "counter");
        assert_eq!(config.db.user, "reader");
        assert_eq!(config.db.password.expose(), "s3cret");
        assert_eq!(config.db.pool_size, 8);
        assert_eq!(config.db.read_timeout, Duration::from_millis(2500));
        assert_eq!(config.db.write_timeout, Duration::from_millis(300));
        assert_eq!(config.log.dir, PathBuf::from("/var/log/app"));
        assert_eq!(config.log.level, log::LevelFilter::Debug);
        assert_eq!(config.log.max_bytes, 65536);
        assert_eq!(config.log.files, 2);
        assert_eq!(config.metrics_addr, Some("127.0.0.2:9101".parse().unwrap()));
        assert_eq!(config.cookie_ttl_seconds, 60);
        assert!(config.trusted_proxies.contains("10.9.9.9".parse().unwrap()));
        assert!(
            !config
                .trusted_proxies
                .contains("127.0.0.1".parse().unwrap())
        );
        assert_eq!(config.internal_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(config.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_timeout: Duration::from_millis(700),
                idle_timeout: Duration::from_millis(800),
                write_timeout: Duration::from_millis(900),
                max_header_bytes: 2048,
                max_connections: 64,
            }
        );
        assert_eq!(config.queue_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        let cases = [
            ("LISTEN_ADDR", "8000", "no host part"),
            ("WORKERS", "0", "below the minimum"),
            ("WORKERS", "many", "not a number"),
            ("HIT_BATCH_MAX", "0", "an empty batch"),
            ("HIT_BATCH_MAX", "10001", "over the maximum"),
            ("HIT_COMMITTERS", "0", "no committer"),
            ("DB_PORT", "70000", "above the maximum"),
            ("DB_HOST", "db;DROP", "not a host"),
            ("DB_HOST", "db-1,db-1", "a member twice"),
            ("DB_HOST", "db-1:70000", "not a port"),
            ("DB_FAILOVER_WAIT_MS", "3600001", "over an hour"),
            ("DB_NAME", "web-cluster", "not an identifier"),
            ("DB_CONNECT_TIMEOUT_MS", "-1", "negative"),
            ("LOG_LEVEL", "loud", "unknown level"),
            ("COOKIE_TTL_SECONDS", "0", "zero"),
            ("TRUSTED_PROXIES", "10.0.0.0/33", "prefix too long"),
            ("INTERNAL_IP", "not-an-ip", "not an address"),
            (
                "DB_READ_TIMEOUT_MS",
                "1999",
                "shorter than a whole-second lock wait allows",
            ),
            ("HEADER_TIMEOUT_MS", "0", "zero"),
            ("IDLE_TIMEOUT_MS", "soon", "not a number"),
            ("WRITE_TIMEOUT_MS", "3600001", "over an hour"),
            ("MAX_HEADER_BYTES", "1023", "too small for a real head"),
            ("MAX_HEADER_BYTES", "2097152", "over 1 MiB"),
            ("MAX_CONNECTIONS", "0", "zero"),
            ("QUEUE_TIMEOUT_MS", "-5", "negative"),
            ("LOG_MAX_BYTES", "100", "smaller than a few lines"),
            ("LOG_FILES", "101", "over the maximum"),
            ("METRICS_ADDR", "9100", "no host part"),
        ];
        for (variable, value, why) in cases {
            let error = config_from(&[(variable, value)]).expect_err(why);
            assert_eq!(error.variable, variable, "{why}");
            assert!(
                error.to_string().contains(variable),
                "{why}: message {error} names the variable"
            );
        }
    }

    #[test]
    fn describe_lists_every_variable_once_with_its_value_and_no_password() {
        let described = Config::describe(|name| match name {
            "DB_PASSWORD" => Some("hunter2".into()),
            "WORKERS" => Some("3".into()),
            _ => None,
        })
        .expect("valid");
        let names: Vec<&str> = described.iter().map(|(name, _)| *name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "each once: {names:?}");
        let value = |name| {
            described
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("WORKERS"), Some("3"));
        assert_eq!(value("LISTEN_ADDR"), Some("0.0.0.0:8000"));
        assert_eq!(value("SHUTDOWN_TIMEOUT_MS"), Some("10000"));
        assert_eq!(value("DB_PASSWORD"), Some("(set)"));
        assert!(!format!("{described:?}").contains("hunter2"));
        assert!(Config::describe(|name| (name == "WORKERS").then(|| "0".into())).is_err());
    }

    #[test]
    fn metrics_can_be_turned_off() {
        let config = config_from(&[("METRICS_ADDR", "off")]).expect("valid");
        assert_eq!(config.metrics_addr, None);
    }

    #[test]
    fn the_password_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!("webcluster-pw-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let config = config_from(&[("DB_PASSWORD_FILE", path.to_str().unwrap())]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.unwrap().db.password.expose(), "from-file");
    }

    #[test]
    fn password_and_password_file_together_are_refused() {
        let error = config_from(&[("DB_PASSWORD", "a"), ("DB_PASSWORD_FILE", "/x")]).unwrap_err();
        assert_eq!(error.variable, "DB_PASSWORD_FILE");
    }

    #[test]
    fn a_missing_password_file_is_reported() {
        let error = config_from(&[("DB_PASSWORD_FILE", "/nonexistent/pw")]).unwrap_err();
        assert_eq!(error.variable, "DB_PASSWORD_FILE");
        assert!(error.problem.contains("/nonexistent/pw"));
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let config = config_from(&[("DB_PASSWORD", "hunter2")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
