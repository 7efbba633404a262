//! The worker pool: N threads share one tiny_http server. Each receives a
//! request, handles it, responds and writes one log line. Nothing else does I/O.

use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::handlers::{self, App};
use crate::http::{Incoming, Reply};
use crate::shutdown::Shutdown;

/// How often the main thread checks whether shutdown has begun.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// How the serving ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal after draining.
    Drained,
    /// Stopped by a signal, but some workers were still busy at the deadline.
    DeadlinePassed { busy_workers: usize },
    /// The server could not go on: tiny_http's accept loop died (for example,
    /// too many open files; it never restarts), or a worker could not start.
    Failed(String),
}

pub struct Server {
    http: Arc<tiny_http::Server>,
    shutdown: Arc<Shutdown>,
    workers: usize,
}

impl Server {
    pub fn bind(listener: TcpListener, workers: usize) -> std::io::Result<Server> {
        let http = tiny_http::Server::from_listener(listener.try_clone()?, None)
            .map(Arc::new)
            .map_err(std::io::Error::other)?;
        let shutdown = Arc::new(Shutdown::new(&listener, Arc::clone(&http), workers)?);
        Ok(Server {
            http,
            shutdown,
            workers,
        })
    }

    pub fn shutdown(&self) -> &Arc<Shutdown> {
        &self.shutdown
    }

    /// Serves until shutdown; waits for the workers at most `grace` once it begins.
    pub fn run(self, app: Arc<App>, grace: Duration) -> Outcome {
        let (done_tx, done_rx) = mpsc::channel::<Option<String>>();
        for id in 0..self.workers {
            let (http, shutdown, app, done) = (
                Arc::clone(&self.http),
                Arc::clone(&self.shutdown),
                Arc::clone(&app),
                done_tx.clone(),
            );
            let spawned = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    let failure = work(&http, &app, &shutdown);
                    // main may have stopped listening after its deadline.
                    let _ = done.send(failure);
                });
            if let Err(e) = spawned {
                log::error!("cannot start worker {id}: {e}");
                self.shutdown.begin();
                return Outcome::Failed(format!("cannot start workers: {e}"));
            }
        }
        drop(done_tx);
        wait_for_workers(&done_rx, self.workers, &self.shutdown, grace)
    }
}

/// Collects each worker's exit; the grace period starts once shutdown begins.
fn wait_for_workers(
    done: &mpsc::Receiver<Option<String>>,
    workers: usize,
    shutdown: &Shutdown,
    grace: Duration,
) -> Outcome {
    let mut failure = None;
    let mut deadline: Option<Instant> = None;
    let mut finished = 0;
    while finished < workers {
        if deadline.is_none() && shutdown.is_stopping() {
            deadline = Some(Instant::now() + grace);
        }
        // Until shutdown begins, wake now and then to notice it.
        let wait = deadline.map_or(SHUTDOWN_POLL, |d| {
            d.saturating_duration_since(Instant::now())
        });
        match done.recv_timeout(wait) {
            Ok(message) => {
                finished += 1;
                failure = failure.or(message);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if deadline.is_none() => {}
            Err(_) => {
                return Outcome::DeadlinePassed {
                    busy_workers: workers - finished,
                };
            }
        }
    }
    match failure {
        Some(reason) => Outcome::Failed(reason),
        None => Outcome::Drained,
    }
}

/// One worker's loop. Returns the reason if the accept loop failed.
fn work(http: &tiny_http::Server, app: &App, shutdown: &Shutdown) -> Option<String> {
    loop {
        match http.recv() {
            Ok(request) => respond(request, app),
            // Woken by unblock(), or accept() failed after the socket closed.
            Err(_) if shutdown.is_stopping() => return None,
            Err(e) => {
                log::error!("accepting connections failed: {e}; shutting down");
                shutdown.begin();
                return Some(e.to_string());
            }
        }
    }
}

/// Handles one request, responds, and writes its log line.
fn respond(request: tiny_http::Request, app: &App) {
    let started = Instant::now();
    let incoming = Incoming::from_request(&request, &app.trusted_proxies);
    let reply =
        catch_unwind(AssertUnwindSafe(|| handlers::handle(app, &incoming))).unwrap_or_else(|_| {
            log::error!(
                "handler panicked on {} {}",
                method_name(&request),
                escaped(&incoming.path)
            );
            Reply::text(500, "internal error\n")
        });
    let status = reply.status;
    let method = method_name(&request);
    // An error here means the client (nginx) went away; there is nobody left to tell.
    if let Err(e) = request.respond(reply.into_response()) {
        log::debug!("could not send the response: {e}");
    }
    // A container's own health probe every few seconds would bury the real
    // traffic; it stays visible at LOG_LEVEL=debug.
    let level = if is_own_probe(&incoming) && status == 200 {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        level,
        "{} {method} {} {status} {:.1}ms",
        incoming.client_ip,
        escaped(&incoming.path),
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// `webcluster healthcheck` (or any probe) from inside the instance itself.
fn is_own_probe(incoming: &Incoming) -> bool {
    incoming.path == "/healthz" && incoming.client_ip.is_loopback()
}

fn method_name(request: &tiny_http::Request) -> String {
    escaped(request.method().as_str())
}

/// Client-supplied text in a log line: control characters escaped, length capped.
fn escaped(text: &str) -> String {
    text.chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_cannot_forge_lines() {
        assert_eq!(escaped("/a\nINFO fake"), "/a\\nINFO fake");
        assert_eq!(escaped(&"x".repeat(500)).len(), 200);
    }
}
