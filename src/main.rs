//! Wiring only: config -> internal IP -> logging -> database -> workers -> shutdown -> exit code.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use webcluster::config::Config;
use webcluster::db::Db;
use webcluster::handlers::App;
use webcluster::internal_ip::choose_internal_ip;
use webcluster::logging;
use webcluster::server::{Outcome, Server};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("webcluster: {e}");
            return ExitCode::from(2);
        }
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

fn run(config: Config) -> Result<Outcome, String> {
    let internal = choose_internal_ip(config.internal_ip, &config.db.host, config.db.port)
        .map_err(|e| e.to_string())?;
    let log_file = logging::init(&config.log_dir, internal.addr, config.log_level)
        .map_err(|e| format!("cannot write logs to {}: {e}", config.log_dir.display()))?;
    log::info!(
        "internal IP {} (from {}); logging to {}",
        internal.addr,
        internal.source,
        log_file.display()
    );

    let listener = TcpListener::bind(config.listen_addr)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen_addr))?;
    let server = Server::bind(listener, config.workers)
        .map_err(|e| format!("cannot start the server: {e}"))?;
    server
        .shutdown()
        .on_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let app = Arc::new(App {
        db: Db::new(&config.db),
        internal_ip: internal.addr,
        trusted_proxies: config.trusted_proxies,
        cookie_ttl_seconds: config.cookie_ttl_seconds,
    });
    log::info!(
        "listening on {} with {} workers; database {}@{}:{}/{}",
        config.listen_addr,
        config.workers,
        config.db.user,
        config.db.host,
        config.db.port,
        config.db.name
    );
    let outcome = server.run(app, config.shutdown_timeout);
    log::info!("stopped: {outcome:?}");
    Ok(outcome)
}
