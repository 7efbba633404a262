//! What the instance tells its operator: logs (stderr and a rotated file)
//! and Prometheus metrics.

pub mod log_file;
pub mod logging;
pub mod metrics;
pub mod process_stats;
