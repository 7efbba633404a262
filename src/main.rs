//! Wiring only: config -> internal IP -> logging -> database -> workers -> shutdown -> exit code.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webcluster::config::{self, Config};
use webcluster::handlers::{self, App};
use webcluster::http::server::{Outcome, Server, ServerSettings};
use webcluster::http::{Incoming, Responder, Route, healthcheck, listener, metrics_endpoint};
use webcluster::internal_ip::{NoInternalIp, choose_internal_ip};
use webcluster::store::committer::{Committer, CommitterSettings};
use webcluster::store::{Db, HitWriter};
use webcluster::telemetry::logging;

/// The least time queued hits get to be committed at shutdown.
const COMMIT_GRACE: Duration = Duration::from_millis(500);

const USAGE: &str = "usage: webcluster              serve (configured by environment variables)
       webcluster healthcheck  exit 0 if this instance's /healthz answers 200
       webcluster routes       print the paths the app answers on, one per line
       webcluster config       print each setting as NAME=value, as this environment gives it";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve(),
        ["healthcheck"] => health(),
        ["config"] => match Config::describe(|name| std::env::var(name).ok()) {
            Ok(settings) => {
                for (name, value) in settings {
                    println!("{name}={value}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => bad_setting(e),
        },
        ["routes"] => {
            for route in Route::ALL {
                println!("{}", route.path());
            }
            ExitCode::SUCCESS
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["-V" | "--version"] => {
            println!("webcluster {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("webcluster: unexpected arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// A setting that cannot be used: one line naming it, and exit status 2.
fn bad_setting(e: config::ConfigError) -> ExitCode {
    eprintln!("webcluster: {e}");
    ExitCode::from(2)
}

fn health() -> ExitCode {
    let listen = match config::listen_addr_from_env() {
        Ok(addr) => addr,
        Err(e) => return bad_setting(e),
    };
    match healthcheck::check(healthcheck::target(listen), Duration::from_secs(2)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webcluster: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return bad_setting(e),
    };
    let code = match run(config) {
        Ok(Outcome::Drained) => ExitCode::SUCCESS,
        Ok(Outcome::DeadlinePassed { busy_workers }) => {
            log::warn!("shutdown deadline passed with {busy_workers} worker(s) still busy");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed(reason)) => {
            log::error!("stopped: {reason}");
            ExitCode::FAILURE
        }
        Err(message) => {
            log::error!("{message}");
            eprintln!("webcluster: {message}");
            ExitCode::FAILURE
        }
    };
    log::logger().flush();
    code
}

/// Why the instance could not start serving: one line, logged and printed.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error(transparent)]
    InternalIp(#[from] NoInternalIp),
    #[error("cannot write logs to {dir} as uid {uid}: {source}")]
    Logs {
        dir: String,
        uid: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} ({variable}): {source}")]
    Listen {
        addr: SocketAddr,
        variable: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the server: {0}")]
    Server(std::io::Error),
    #[error("cannot serve metrics: {0}")]
    Metrics(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(ctrlc::Error),
    #[error("cannot start the committers: {0}")]
    Committers(std::io::Error),
}

fn bind(addr: SocketAddr, variable: &'static str) -> Result<TcpListener, StartupError> {
    listener::listen(addr).map_err(|source| StartupError::Listen {
        addr,
        variable,
        source,
    })
}

fn run(config: Config) -> Result<Outcome, StartupError> {
    // Any member will do: they share the app's network.
    let members = config.db.members.iter().map(|m| (m.host.as_str(), m.port));
    let internal = choose_internal_ip(config.internal_ip, members)?;
    let log_file =
        logging::init(&config.log, internal.addr).map_err(|source| StartupError::Logs {
            dir: config.log.dir.display().to_string(),
            uid: own_uid(),
            source,
        })?;
    log::info!(
        "internal IP {} (from {}); logging to {}",
        internal.addr,
        internal.source,
        log_file.display()
    );

    let listener = bind(config.listen_addr, "LISTEN_ADDR")?;
    let server = Server::bind(
        listener,
        ServerSettings {
            workers: config.workers,
            limits: config.connections.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        },
    )
    .map_err(StartupError::Server)?;
    if let Some(addr) = config.metrics_addr {
        metrics_endpoint::start(bind(addr, "METRICS_ADDR")?, server.connection_count())
            .map_err(StartupError::Metrics)?;
        log::info!("metrics at http://{addr}/metrics");
    }
    server
        .shutdown()
        .on_signals()
        .map_err(StartupError::Signals)?;

    let db = Db::new(&config.db);
    let writers = (0..config.hit_committers)
        .map(|_| Box::new(db.batch_writer()) as Box<dyn HitWriter>)
        .collect();
    let committer = Committer::start(
        writers,
        CommitterSettings {
            batch_max: config.hit_batch_max,
            // Each connection has one request in flight at most.
            queue_max: config.connections.max_connections,
            queue_timeout: config.queue_timeout,
            failover_wait: config.db.failover_wait,
        },
    )
    .map_err(StartupError::Committers)?;
    let app = Arc::new(App {
        db,
        committer,
        internal_ip: internal.addr,
        cookie_ttl_seconds: config.cookie_ttl_seconds,
        queue_timeout: config.queue_timeout,
    });
    log::info!(
        "listening on {} with {} workers and {} committers (batches of up to {}); database {} on {}",
        config.listen_addr,
        config.workers,
        config.hit_committers,
        config.hit_batch_max,
        config.db.name,
        config
            .db
            .members
            .iter()
            .map(|m| format!("{}@{m}", config.db.user))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let serving = Arc::clone(&app);
    let handler = Arc::new(move |incoming: &Incoming, respond: Responder| {
        handlers::handle(&serving, incoming, respond)
    });
    let shutdown = Arc::clone(server.shutdown());
    let outcome = server.run(handler, config.shutdown_timeout);
    // The workers are done: whatever hits are still queued are committed now,
    // within what is left of SHUTDOWN_TIMEOUT_MS (but a moment at least).
    let began = shutdown.began().unwrap_or_else(Instant::now);
    let left = (began + config.shutdown_timeout).saturating_duration_since(Instant::now());
    let stats = app.committer.stop(left.max(COMMIT_GRACE));
    log::info!(
        "committed {} hits in {} batches (mean {:.1} per batch)",
        stats.hits,
        stats.batches,
        stats.hits as f64 / stats.batches.max(1) as f64
    );
    log::info!("stopped: {outcome:?}");
    Ok(outcome)
}

/// For error messages: a log directory owned by someone else is the usual
/// reason a container cannot start.
fn own_uid() -> String {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "?".into())
}
