//! The worker pool: N threads share one tiny_http server. Each receives a
//! request and hands it to the handler with a responder, which answers it and
//! writes its log line whenever the handler (or, for a hit, the committer)
//! calls it.

use std::net::{IpAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::client_ip::TrustedProxies;
use super::shutdown::Shutdown;
use super::{Incoming, Reply, Responder, Route};
use crate::request_id::RequestId;
use crate::telemetry::metrics::metrics;

/// How often the main thread checks whether shutdown has begun.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// How the serving ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal after draining.
    Drained,
    /// Stopped by a signal, but some workers were still busy at the deadline.
    DeadlinePassed { busy_workers: usize },
    /// The server could not go on: tiny_http's listening socket failed for
    /// good, or a worker could not start.
    Failed(String),
}

/// What one client connection may hold or make the instance wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HEADER_TIMEOUT_MS`: a request head must arrive within this.
    pub header_timeout: Duration,
    /// `IDLE_TIMEOUT_MS`: a kept-alive connection with no next request is closed after this.
    pub idle_timeout: Duration,
    /// `WRITE_TIMEOUT_MS`: how long a client has to read its answer; past
    /// it, the connection is closed. No thread waits on it.
    pub write_timeout: Duration,
    /// `MAX_HEADER_BYTES`: a larger request head is answered 431.
    pub max_header_bytes: usize,
    /// `MAX_CONNECTIONS`: one more connection is answered 503 and closed.
    pub max_connections: usize,
}

/// What the server needs besides the handler.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub workers: usize,
    pub limits: ConnectionLimits,
    /// Peers whose X-Real-IP, X-Request-ID and X-Forwarded-Proto are believed.
    pub trusted_proxies: TrustedProxies,
}

pub struct Server {
    http: Arc<tiny_http::Server>,
    shutdown: Arc<Shutdown>,
    workers: usize,
    trusted_proxies: Arc<TrustedProxies>,
}

impl Server {
    pub fn bind(listener: TcpListener, settings: ServerSettings) -> std::io::Result<Server> {
        let limits = tiny_http::Limits {
            header_timeout: settings.limits.header_timeout,
            idle_timeout: settings.limits.idle_timeout,
            write_timeout: settings.limits.write_timeout,
            max_head_bytes: settings.limits.max_header_bytes,
            max_connections: settings.limits.max_connections,
        };
        let http =
            tiny_http::Server::from_listener_with_limits(listener.try_clone()?, None, limits)
                .map(Arc::new)
                .map_err(std::io::Error::other)?;
        let shutdown = Arc::new(Shutdown::new(
            &listener,
            Arc::clone(&http),
            settings.workers,
        )?);
        Ok(Server {
            http,
            shutdown,
            workers: settings.workers,
            trusted_proxies: Arc::new(settings.trusted_proxies),
        })
    }

    /// Reads the number of open client connections, for the metrics.
    pub fn connection_count(&self) -> impl Fn() -> usize + Send + 'static {
        let http = Arc::clone(&self.http);
        move || http.num_connections()
    }

    pub fn shutdown(&self) -> &Arc<Shutdown> {
        &self.shutdown
    }

    /// Serves until shutdown; waits for the workers at most `grace` once it begins.
    pub fn run<H>(self, handler: Arc<H>, grace: Duration) -> Outcome
    where
        H: Fn(&Incoming, Responder) + Send + Sync + 'static,
    {
        let (done_tx, done_rx) = mpsc::channel::<Option<String>>();
        for id in 0..self.workers {
            let (http, shutdown, handler, trusted, done) = (
                Arc::clone(&self.http),
                Arc::clone(&self.shutdown),
                Arc::clone(&handler),
                Arc::clone(&self.trusted_proxies),
                done_tx.clone(),
            );
            let spawned = thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || {
                    let failure = work(&http, &*handler, &trusted, &shutdown);
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

/// One worker's loop. Returns the reason if the listening socket failed.
fn work(
    http: &tiny_http::Server,
    handler: &dyn Fn(&Incoming, Responder),
    trusted: &TrustedProxies,
    shutdown: &Shutdown,
) -> Option<String> {
    loop {
        match http.recv() {
            Ok(request) => {
                // A panic anywhere in the cycle, respond included, costs that
                // one answer (tiny_http sends 500 for a dropped request), never
                // the worker: a pool that lost its workers would answer nothing.
                let served = catch_unwind(AssertUnwindSafe(|| serve(request, handler, trusted)));
                if served.is_err() {
                    log::error!("a request's handling panicked; the worker carries on");
                }
            }
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

/// Hands one request to the handler with a responder that answers it and
/// writes its log line, whenever the handler (or the committer) calls it.
fn serve(
    request: tiny_http::Request,
    handler: &dyn Fn(&Incoming, Responder),
    trusted: &TrustedProxies,
) {
    let incoming = Incoming::from_request(&request, trusted);
    let line = LogLine {
        started: Instant::now(),
        client: incoming.client_ip,
        method: method_name(&request),
        path: escaped(&incoming.path),
        route: Route::label(&incoming.path),
        request_id: incoming.request_id.clone(),
        own_probe: is_own_probe(&incoming.path, incoming.client_ip),
    };
    let (method, path) = (line.method.clone(), line.path.clone());
    let respond = Responder::new(move |reply| answer(request, reply, &line));
    // A responder dropped by a panic drops its request, which tiny_http answers 500.
    if catch_unwind(AssertUnwindSafe(|| handler(&incoming, respond))).is_err() {
        log::error!("handler panicked on {method} {path}");
    }
}

/// A request's log line, but for the status and the time it took.
struct LogLine {
    started: Instant,
    client: IpAddr,
    method: String,
    path: String,
    route: &'static str,
    /// nginx's `$request_id` (or the app's own): the same id is in nginx's
    /// access log and in `access_log.request_id`.
    request_id: RequestId,
    own_probe: bool,
}

fn answer(request: tiny_http::Request, reply: Reply, line: &LogLine) {
    let status = reply.status;
    // An error here means the client (nginx) went away; there is nobody left to tell.
    if let Err(e) = request.respond(reply.into_response()) {
        log::debug!("could not send the response: {e}");
    }
    let took = line.started.elapsed();
    metrics().request(line.route, status, took);
    // A container's own health probe every few seconds would bury the real
    // traffic; it stays visible at LOG_LEVEL=debug.
    let level = match line.own_probe && status == 200 {
        true => log::Level::Debug,
        false => log::Level::Info,
    };
    log::log!(
        level,
        "{} {} {} {status} {:.1}ms id={}",
        line.client,
        line.method,
        line.path,
        took.as_secs_f64() * 1000.0,
        line.request_id
    );
}

/// `webcluster healthcheck` (or any probe) from inside the instance itself.
fn is_own_probe(path: &str, client: IpAddr) -> bool {
    path == "/healthz" && client.is_loopback()
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
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    #[test]
    fn log_fields_cannot_forge_lines() {
        assert_eq!(escaped("/a\nINFO fake"), "/a\\nINFO fake");
        assert_eq!(escaped(&"x".repeat(500)).len(), 200);
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn a_panicking_handler_costs_one_500_and_never_a_worker() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = Server::bind(
            listener,
            ServerSettings {
                workers: 1,
                limits: ConnectionLimits {
                    header_timeout: Duration::from_secs(5),
                    idle_timeout: Duration::from_secs(60),
                    write_timeout: Duration::from_secs(10),
                    max_header_bytes: 40_960,
                    max_connections: 512,
                },
                trusted_proxies: TrustedProxies::default(),
            },
        )
        .expect("server");
        let shutdown = Arc::clone(server.shutdown());
        let handler = Arc::new(|incoming: &Incoming, respond: Responder| {
            assert!(incoming.path != "/panic", "a bug in a handler");
            respond.send(Reply::text(200, "fine\n"));
        });
        let running = thread::spawn(move || server.run(handler, Duration::from_secs(5)));

        // One worker: if the panic had taken it, nothing would answer after.
        for _ in 0..3 {
            assert!(get(addr, "/panic").starts_with("HTTP/1.1 500"));
            assert!(get(addr, "/ok").starts_with("HTTP/1.1 200"));
        }
        shutdown.begin();
        assert_eq!(running.join().expect("run"), Outcome::Drained);
    }
}
