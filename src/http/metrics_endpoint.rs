//! `GET /metrics` on METRICS_ADDR, apart from the app's port: nginx never
//! proxies it, and a busy app cannot starve a scrape of workers.

use std::io::Cursor;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use tiny_http::{Header, Method, Response, StatusCode};

use super::route::without_query;
use crate::telemetry::metrics::metrics;

/// OpenMetrics text, which Prometheus reads natively.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves scrapes on one thread until the process exits. `open_connections`
/// reads the app server's connection count at each scrape.
pub fn start(
    listener: TcpListener,
    open_connections: impl Fn() -> usize + Send + 'static,
) -> std::io::Result<()> {
    // A scraper needs few connections and small heads. Each connection ends
    // after one scrape, and one that sends nothing, or does not read its
    // answer, is closed within seconds: idle ones cannot lock a scraper out.
    let limits = tiny_http::Limits {
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_head_bytes: 16 * 1024,
        max_connections: 64,
    };
    let http = tiny_http::Server::from_listener_with_limits(listener, None, limits)
        .map_err(std::io::Error::other)?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for mut request in http.incoming_requests() {
                request.close_connection();
                let response = answer(request.method(), request.url(), &open_connections);
                if let Err(e) = request.respond(response) {
                    log::debug!("could not send metrics: {e}");
                }
            }
        })?;
    Ok(())
}

fn answer(
    method: &Method,
    url: &str,
    open_connections: &dyn Fn() -> usize,
) -> Response<Cursor<Vec<u8>>> {
    let (status, body, content_type) = match (method, without_query(url)) {
        (Method::Get | Method::Head, "/metrics") => {
            (200, metrics().encode(open_connections()), CONTENT_TYPE)
        }
        (_, "/metrics") => (
            405,
            "method not allowed\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => (
            404,
            "not found: metrics are at /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut response = Response::from_data(body.into_bytes()).with_status_code(StatusCode(status));
    if let Ok(header) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    response
}
