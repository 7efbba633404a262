//! One function per endpoint: a checked request and the app's state in, a
//! `Reply` out, given to the request's `Responder` at once or, for a hit,
//! once the transaction that holds it has returned.

use std::net::IpAddr;
use std::time::Duration;

use crate::http::sticky;
use crate::http::{ALLOWED_METHODS, Incoming, Method, Reply, Responder, Route};
use crate::store::committer::{Committer, NotRecorded};
use crate::store::{Db, DbError, Hit};

/// What every request handler shares.
pub struct App {
    pub db: Db,
    /// Where `GET /` hands its hit, to be committed in a batch.
    pub committer: Committer,
    pub internal_ip: IpAddr,
    pub cookie_ttl_seconds: u32,
    /// Longer in the queue than this, and a request that needs the database
    /// is answered 503 at once: its client (or nginx) may have given up, and
    /// answering it late would only make the next ones later still. The
    /// committer applies the same limit to a hit before its batch is sent.
    pub queue_timeout: Duration,
}

/// A request's answer: ready now, or `ok` once `hit` is committed.
#[derive(Debug)]
pub enum Answer {
    Now(Reply),
    AfterCommit { hit: Hit, ok: Reply },
}

/// Answers `request` through `respond`. A hit is handed to the committer,
/// which answers it after its batch's commit: the worker does not wait, and
/// goes on with the next request (one thread wake-up fewer per hit).
pub fn handle(app: &App, request: &Incoming, respond: Responder) {
    match answer(app, request) {
        Answer::Now(reply) => respond.send(reply),
        Answer::AfterCommit { hit, ok } => {
            app.committer.submit(hit, request.arrived, move |outcome| {
                respond.send(match outcome {
                    Ok(()) => ok,
                    Err(reason) => not_recorded(reason),
                })
            })
        }
    }
}

/// Routes by path, then by method.
pub fn answer(app: &App, request: &Incoming) -> Answer {
    let Some(route) = Route::from_path(&request.path) else {
        return Answer::Now(Reply::text(404, "not found\n"));
    };
    if request.method == Method::Other {
        let reply = Reply::text(405, "method not allowed\n").with_header("Allow", ALLOWED_METHODS);
        return Answer::Now(reply);
    }
    if route != Route::Healthz && request.queued() > app.queue_timeout {
        log::warn!(
            "shed a request that waited {:.0} ms for a worker",
            request.queued().as_secs_f64() * 1000.0
        );
        return Answer::Now(overloaded());
    }
    match route {
        Route::Hit => hit(app, request),
        Route::ShowCount => Answer::Now(no_store(show_count(app))),
        Route::Healthz => Answer::Now(no_store(Reply::text(200, "ok\n"))),
        Route::Readyz => Answer::Now(no_store(ready(app))),
    }
}

fn no_store(reply: Reply) -> Reply {
    reply.with_header("Cache-Control", "no-store")
}

/// `GET /`: count the hit, answer with this instance's address, pin the client here.
/// `HEAD /` answers the same way but counts nothing.
fn hit(app: &App, request: &Incoming) -> Answer {
    let reply = no_store(Reply::text(200, format!("{}\n", app.internal_ip)));
    let cookie = sticky::cookie_to_set(
        request.pinned,
        app.internal_ip,
        app.cookie_ttl_seconds,
        request.https,
    );
    let ok = match cookie {
        Some(cookie) => reply.with_header("Set-Cookie", cookie),
        None => reply,
    };
    if request.method != Method::Get {
        return Answer::Now(ok);
    }
    let hit = Hit {
        request_id: request.request_id.clone(),
        client_ip: request.client_ip,
        internal_ip: app.internal_ip,
    };
    Answer::AfterCommit { hit, ok }
}

/// `GET /showcount`: the global counter.
fn show_count(app: &App) -> Reply {
    match app.db.read_hits() {
        Ok(hits) => Reply::text(200, format!("{hits}\n")),
        Err(error) => unavailable(&error),
    }
}

/// `GET /readyz`: a committer runs, the database answers and the procedures exist.
fn ready(app: &App) -> Reply {
    if !app.committer.running() {
        log::error!("not ready: no committer is running");
        return database_unavailable();
    }
    match app.db.check_ready() {
        Ok(()) => Reply::text(200, "ready\n"),
        Err(error) => unavailable(&error),
    }
}

/// Every database failure is a 503 to the client; the cause goes to the log only.
fn unavailable(error: &DbError) -> Reply {
    log::error!("{error}");
    database_unavailable()
}

/// The committer logged why the batch failed; here only the answer is left.
fn not_recorded(reason: NotRecorded) -> Reply {
    log::debug!("a hit was not recorded: {reason:?}");
    match reason {
        NotRecorded::Failed | NotRecorded::OutcomeUnknown => database_unavailable(),
        NotRecorded::Overloaded => overloaded(),
        // nginx tries a 502 on another replica (proxy_next_upstream
        // http_502), with the same request id; the app answers 502 for
        // nothing else.
        NotRecorded::ShuttingDown => {
            no_store(Reply::text(502, "shutting down: try another instance\n"))
        }
    }
}

fn overloaded() -> Reply {
    no_store(Reply::text(503, "overloaded\n").with_header("Retry-After", "1"))
}

fn database_unavailable() -> Reply {
    no_store(Reply::text(503, "database unavailable\n").with_header("Retry-After", "1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::request_id::RequestId;
    use crate::store::committer::CommitterSettings;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// An app whose database port refuses connections: every CALL fails fast.
    fn app_without_database() -> App {
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config::from_lookup(|name| match name {
            "DB_PORT" => Some(closed_port.to_string()),
            "DB_CONNECT_TIMEOUT_MS" => Some("500".into()),
            // Should another test's listener take the freed port meanwhile,
            // a call still fails within the reply's wait.
            "DB_READ_TIMEOUT_MS" => Some("2000".into()),
            _ => None,
        })
        .unwrap();
        let db = Db::new(&config.db);
        App {
            committer: Committer::start(
                vec![Box::new(db.batch_writer())],
                CommitterSettings {
                    batch_max: 256,
                    queue_max: 512,
                    queue_timeout: Duration::from_secs(2),
                    failover_wait: Duration::ZERO,
                },
            )
            .unwrap(),
            db,
            internal_ip: "10.0.0.2".parse().unwrap(),
            cookie_ttl_seconds: 300,
            queue_timeout: Duration::from_secs(2),
        }
    }

    /// What `handle` answers, whether at once or after a commit.
    fn reply_to(app: &App, request: &Incoming) -> Reply {
        let (answer, answered) = mpsc::channel();
        handle(
            app,
            request,
            Responder::new(move |reply| {
                let _ = answer.send(reply);
            }),
        );
        answered
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer")
    }

    fn request(method: Method, path: &str, pinned: Option<&str>) -> Incoming {
        Incoming {
            method,
            path: path.into(),
            client_ip: "192.0.2.1".parse().unwrap(),
            request_id: RequestId::random(),
            pinned: pinned.map(|ip| ip.parse().unwrap()),
            https: false,
            arrived: std::time::Instant::now(),
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        let reply = reply_to(
            &app_without_database(),
            &request(Method::Get, "/admin", None),
        );
        assert_eq!(reply.status, 404);
    }

    #[test]
    fn other_methods_on_known_paths_are_405_with_allow() {
        for path in ["/", "/showcount", "/healthz", "/readyz"] {
            let reply = reply_to(&app_without_database(), &request(Method::Other, path, None));
            assert_eq!(reply.status, 405, "{path}");
            assert_eq!(reply.header("Allow"), Some("GET, HEAD"), "{path}");
        }
    }

    #[test]
    fn healthz_needs_no_database() {
        let reply = reply_to(
            &app_without_database(),
            &request(Method::Get, "/healthz", None),
        );
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn database_failures_are_503_with_retry_after() {
        let app = app_without_database();
        for path in ["/", "/showcount", "/readyz"] {
            let reply = reply_to(&app, &request(Method::Get, path, None));
            assert_eq!(reply.status, 503, "{path}");
            assert_eq!(reply.header("Retry-After"), Some("1"), "{path}");
            assert_eq!(
                reply.header("Set-Cookie"),
                None,
                "{path}: no pin without an answer"
            );
        }
    }

    #[test]
    fn head_answers_like_get_without_counting_a_hit() {
        // The database is down, so a 200 proves no CALL was attempted.
        let reply = reply_to(&app_without_database(), &request(Method::Head, "/", None));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "10.0.0.2\n");
        assert!(reply.header("Set-Cookie").is_some());
    }

    #[test]
    fn the_cookie_is_secure_for_a_request_that_came_over_https() {
        let app = app_without_database();
        let mut over_https = request(Method::Head, "/", None);
        over_https.https = true;
        let secure = reply_to(&app, &over_https);
        assert!(secure.header("Set-Cookie").unwrap().ends_with("; Secure"));
        let plain = reply_to(&app, &request(Method::Head, "/", None));
        assert!(!plain.header("Set-Cookie").unwrap().contains("Secure"));
    }

    #[test]
    fn a_client_pinned_here_is_not_sent_the_cookie_again() {
        let reply = reply_to(
            &app_without_database(),
            &request(Method::Head, "/", Some("10.0.0.2")),
        );
        assert_eq!(reply.header("Set-Cookie"), None);
    }

    #[test]
    fn a_request_that_waited_too_long_is_shed_unless_it_is_a_health_probe() {
        let app = app_without_database();
        for (path, status) in [
            ("/", 503),
            ("/showcount", 503),
            ("/readyz", 503),
            ("/healthz", 200),
        ] {
            let mut late = request(Method::Head, path, None);
            late.arrived -= Duration::from_secs(3);
            let reply = reply_to(&app, &late);
            assert_eq!(reply.status, status, "{path}");
            if status == 503 {
                assert_eq!(reply.body, "overloaded\n", "{path}");
                assert_eq!(reply.header("Retry-After"), Some("1"), "{path}");
            }
        }
    }
}
