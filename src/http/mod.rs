//! The HTTP side: the listening socket, the worker pool over tiny_http,
//! requests in and answers out, and the headers the app reads.

pub mod client_ip;
pub mod healthcheck;
pub mod listener;
pub mod metrics_endpoint;
pub mod reply;
pub mod request;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod sticky;

pub use reply::{Reply, Responder};
pub use request::{Incoming, Method};
pub use route::{ALLOWED_METHODS, Route};
