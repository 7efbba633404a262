//! One function per endpoint: a checked request and the app's state in, a `Reply` out.

use std::net::IpAddr;

use crate::client_ip::TrustedProxies;
use crate::db::{Db, DbError, Hit};
use crate::http::{ALLOWED_METHODS, Incoming, Method, Reply, Route};
use crate::sticky;

/// What every request handler shares.
pub struct App {
    pub db: Db,
    pub internal_ip: IpAddr,
    pub trusted_proxies: TrustedProxies,
    pub cookie_ttl_seconds: u32,
}

/// Routes by path, then by method.
pub fn handle(app: &App, request: &Incoming) -> Reply {
    let Some(route) = Route::from_path(&request.path) else {
        return Reply::text(404, "not found\n");
    };
    if request.method == Method::Other {
        return Reply::text(405, "method not allowed\n").with_header("Allow", ALLOWED_METHODS);
    }
    let reply = match route {
        Route::Hit => hit(app, request),
        Route::ShowCount => show_count(app),
        Route::Healthz => Reply::text(200, "ok\n"),
        Route::Readyz => ready(app),
    };
    reply.with_header("Cache-Control", "no-store")
}

/// `GET /`: count the hit, answer with this instance's address, pin the client here.
/// `HEAD /` answers the same way but counts nothing.
fn hit(app: &App, request: &Incoming) -> Reply {
    if request.method == Method::Get {
        let hit = Hit {
            request_id: &request.request_id,
            client_ip: request.client_ip,
            internal_ip: app.internal_ip,
        };
        if let Err(error) = app.db.record_hit(&hit) {
            return unavailable(&error);
        }
    }
    let reply = Reply::text(200, format!("{}\n", app.internal_ip));
    match sticky::cookie_to_set(
        request.cookie.as_deref(),
        app.internal_ip,
        app.cookie_ttl_seconds,
    ) {
        Some(cookie) => reply.with_header("Set-Cookie", cookie),
        None => reply,
    }
}

/// `GET /showcount`: the global counter.
fn show_count(app: &App) -> Reply {
    match app.db.read_hits() {
        Ok(hits) => Reply::text(200, format!("{hits}\n")),
        Err(error) => unavailable(&error),
    }
}

/// `GET /readyz`: the database answers and the procedures exist.
fn ready(app: &App) -> Reply {
    match app.db.check_ready() {
        Ok(()) => Reply::text(200, "ready\n"),
        Err(error) => unavailable(&error),
    }
}

/// Every database failure is a 503 to the client; the cause goes to the log only.
fn unavailable(error: &DbError) -> Reply {
    log::error!("{error}");
    Reply::text(503, "database unavailable\n").with_header("Retry-After", "1")
}
