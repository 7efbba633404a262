//! The instance's log file, rotated by size: `name.log` is written, and when
//! the next line would take it past `max_bytes` it becomes `name.log.1`
//! (`.1` becomes `.2`, and so on; the oldest beyond `files` is deleted).
//! Lines are never split, so the directory holds at most
//! `max_bytes × (files + 1)` bytes of this instance's logs.
//!
//! A rotation that fails (no descriptors, no space, a read-only directory)
//! loses nothing: the new file is opened before anything moves, files move
//! only into a free place, so a rotation retried after a failure never
//! shifts the history twice, and until it succeeds the current file takes
//! the lines. It is retried at most once a second.
//!
//! Hand-written rather than `file-rotate`: that crate panics on I/O surprises
//! in its rotation path (asserts, `expect`), which would poison the logger.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a failed rotation waits before it is tried again.
const RETRY_ROTATION: Duration = Duration::from_secs(1);

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    files: usize,
    /// The last write ended a line: only then may the file rotate.
    at_line_start: bool,
    /// After a failed rotation, none is tried before this.
    retry_at: Option<Instant>,
    /// Rotations that failed, since the last time this was read.
    failed_rotations: u64,
}

impl RotatingFile {
    /// Opens `path` for appending; its current size counts toward the limit.
    pub fn open(path: &Path, max_bytes: u64, files: usize) -> io::Result<RotatingFile> {
        let file = append(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            written,
            max_bytes,
            files,
            at_line_start: true,
            retry_at: None,
            failed_rotations: 0,
        })
    }

    /// Rotations that failed since the last call (for the metrics).
    pub fn take_failed_rotations(&mut self) -> u64 {
        std::mem::take(&mut self.failed_rotations)
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.with_suffix(&format!(".{n}"))
    }

    /// Starts a new file; the old ones move up by one, the oldest goes.
    fn rotate(&mut self) -> io::Result<()> {
        // Opened first: if this fails, nothing has moved.
        let next_path = self.with_suffix(".next");
        let next = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&next_path)?;
        if let Err(e) = self.shift_history() {
            let _ = fs::remove_file(&next_path);
            return Err(e);
        }
        fs::rename(&next_path, &self.path)?;
        self.file = next;
        self.written = 0;
        Ok(())
    }

    /// Frees `.1` for the current file, moving only the files below the
    /// first free place (so a retry after a failure shifts nothing twice),
    /// then moves the current file there.
    fn shift_history(&self) -> io::Result<()> {
        if self.files == 0 {
            return fs::remove_file(&self.path);
        }
        let free = (1..=self.files).find(|&n| !self.rotated(n).exists());
        let free = match free {
            Some(n) => n,
            None => {
                fs::remove_file(self.rotated(self.files))?;
                self.files
            }
        };
        for n in (1..free).rev() {
            fs::rename(self.rotated(n), self.rotated(n + 1))?;
        }
        fs::rename(&self.path, self.rotated(1))
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingFile {
    /// Rotates between lines; what would pass the limit within a line is cut.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        let full = self.written > 0 && self.written + len > self.max_bytes;
        let may_retry = self.retry_at.is_none_or(|at| Instant::now() >= at);
        if self.at_line_start && full && may_retry {
            match self.rotate() {
                Ok(()) => self.retry_at = None,
                Err(_) => {
                    self.failed_rotations += 1;
                    self.retry_at = Some(Instant::now() + RETRY_ROTATION);
                }
            }
        }
        // Until a rotation succeeds the current file takes whole lines past
        // its limit: a line is never lost to a failed rotation.
        let room = match self.retry_at {
            Some(_) => u64::MAX,
            None => self.max_bytes.saturating_sub(self.written),
        };
        let keep = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.file.write_all(&buf[..keep])?;
        self.written += keep as u64;
        self.at_line_start = buf.ends_with(b"\n");
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_bytes(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum()
    }

    #[test]
    fn the_directory_never_exceeds_max_bytes_times_files_plus_one() {
        let dir = std::env::temp_dir().join(format!("log-file-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("app.log");
        let mut file = RotatingFile::open(&path, 1000, 3).expect("open");
        for i in 0..2000 {
            // One line per call, as the logger writes them.
            let line = format!("line {i} {}\n", "x".repeat(i % 90));
            file.write_all(line.as_bytes()).expect("write");
            assert!(dir_bytes(&dir) <= 1000 * 4, "after line {i}");
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["app.log", "app.log.1", "app.log.2", "app.log.3"]);
        // Whole lines only, and the newest is last in app.log.
        let current = fs::read_to_string(&path).expect("read");
        assert!(current.ends_with('\n') && current.lines().all(|l| l.starts_with("line ")));
        assert!(current.contains("line 1999 "));
        let _ = fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn a_rotation_that_cannot_open_its_new_file_moves_nothing_and_loses_no_line() {
        // Root ignores permissions: a directory where the new file would go
        // makes the open fail, as EMFILE, ENOSPC or a read-only mount would.
        let dir = scratch("log-file-open-fails");
        let path = dir.join("app.log");
        fs::write(dir.join("app.log.1"), "history 1\n").expect("seed");
        fs::write(dir.join("app.log.2"), "history 2\n").expect("seed");
        let mut file = RotatingFile::open(&path, 100, 2).expect("open");
        fs::create_dir(dir.join("app.log.next")).expect("block the new file");
        for i in 0..50 {
            file.write_all(format!("line {i:02} {}\n", "x".repeat(20)).as_bytes())
                .expect("a line is written");
        }
        assert_eq!(
            read(&dir.join("app.log.1")),
            "history 1\n",
            "nothing shifted"
        );
        assert_eq!(
            read(&dir.join("app.log.2")),
            "history 2\n",
            "nothing deleted"
        );
        let current = read(&path);
        for i in 0..50 {
            assert!(current.contains(&format!("line {i:02} ")), "line {i} kept");
        }
        assert!(file.take_failed_rotations() >= 1);
        assert_eq!(file.take_failed_rotations(), 0, "counted once each");

        // Once the directory is usable again, one rotation shifts once.
        fs::remove_dir(dir.join("app.log.next")).expect("unblock");
        file.retry_at = Some(Instant::now());
        file.write_all(b"after\n").expect("write");
        assert_eq!(read(&dir.join("app.log.2")), "history 1\n");
        assert!(read(&dir.join("app.log.1")).contains("line 49 "));
        assert_eq!(read(&path), "after\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_after_one_that_failed_midway_never_shifts_the_history_twice() {
        // As a rotation leaves things when .3 moved to .4 and then moving .2
        // to .3 failed: the retry must move .2 and .1 only.
        let dir = scratch("log-file-half-shifted");
        let path = dir.join("app.log");
        fs::write(dir.join("app.log.1"), "history 1\n").expect("seed");
        fs::write(dir.join("app.log.2"), "history 2\n").expect("seed");
        fs::write(dir.join("app.log.4"), "history 3\n").expect("seed");
        let mut file = RotatingFile::open(&path, 30, 4).expect("open");
        file.write_all(b"current, to be app.log.1\n")
            .expect("write");
        file.write_all(b"a line that forces a rotation\n")
            .expect("write");
        assert_eq!(
            read(&dir.join("app.log.4")),
            "history 3\n",
            "not shifted twice"
        );
        assert_eq!(read(&dir.join("app.log.3")), "history 2\n");
        assert_eq!(read(&dir.join("app.log.2")), "history 1\n");
        assert_eq!(read(&dir.join("app.log.1")), "current, to be app.log.1\n");
        assert_eq!(read(&path), "a line that forces a rotation\n");
        assert_eq!(file.take_failed_rotations(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_restart_counts_what_the_file_already_holds() {
        let dir = std::env::temp_dir().join(format!("log-file-restart-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("app.log");
        fs::write(&path, "x".repeat(990)).expect("seed");
        let mut file = RotatingFile::open(&path, 1000, 1).expect("open");
        file.write_all(b"a line that does not fit\n")
            .expect("write");
        assert_eq!(
            fs::read_to_string(dir.join("app.log.1"))
                .expect("old")
                .len(),
            990
        );
        assert_eq!(
            fs::read_to_string(&path).expect("new"),
            "a line that does not fit\n"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
