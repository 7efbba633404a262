//! Logs to stderr and to one file per instance in LOG_DIR, without colour codes.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use simplelog::{CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};

/// The instance's log file: one per internal IP, so replicas sharing a directory never interleave.
pub fn log_file_path(dir: &Path, internal_ip: IpAddr) -> PathBuf {
    dir.join(format!("webcluster-{internal_ip}.log"))
}

/// Installs the global logger; returns the file it appends to.
pub fn init(dir: &Path, internal_ip: IpAddr, level: LevelFilter) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = log_file_path(dir, internal_ip);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        // The drivers' own debug chatter is not ours to show.
        .add_filter_allow_str("webcluster")
        .build();
    // WriteLogger, not TermLogger: no ANSI codes in redirected output.
    let loggers: Vec<Box<dyn SharedLogger>> = vec![
        WriteLogger::new(level, config.clone(), io::stderr()),
        WriteLogger::new(level, config, file),
    ];
    CombinedLogger::init(loggers).map_err(io::Error::other)?;
    Ok(path)
}
