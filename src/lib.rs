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
pub mod listener;
pub mod log_file;
pub mod logging;
pub mod metrics;
pub mod metrics_endpoint;
pub mod pool;
pub mod process_stats;
pub mod request_id;
pub mod server;
pub mod shutdown;
pub mod sticky;
