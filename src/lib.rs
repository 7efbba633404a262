//! WebClusterBalancer's app: a hit counter on tiny_http workers over MySQL stored procedures.
//!
//! Layers, top down: `config` (environment → settings), `handlers` (one
//! function per endpoint), then `http` (sockets, workers, requests and
//! answers) and `store` (MySQL: group commit, reads, the pool), then
//! `telemetry` (logs, metrics), then the leaves `request_id` and
//! `internal_ip`. No module imports from a layer above its own.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod handlers;
pub mod http;
pub mod internal_ip;
pub mod request_id;
pub mod store;
pub mod telemetry;
