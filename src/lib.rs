//! WebClusterBalancer's app: a hit counter on tiny_http workers over MySQL stored procedures.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod client_ip;
pub mod committer;
pub mod config;
pub mod db;
pub mod handlers;
pub mod healthcheck;
pub mod http;
pub mod internal_ip;
pub mod logging;
pub mod pool;
pub mod request_id;
pub mod server;
pub mod shutdown;
pub mod sticky;
