//! The instance's log file, rotated by size: `name.log` is written, and when
//! the next line would take it past `max_bytes` it becomes `name.log.1`
//! (`.1` becomes `.2`, and so on; the oldest beyond `files` is deleted).
//! Lines are never split, so the directory holds at most
//! `max_bytes × (files + 1)` bytes of this instance's logs.
//!
//! Hand-written rather than `file-rotate`: that crate panics on I/O surprises
//! in its rotation path (asserts, `expect`), which would poison the logger.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    files: usize,
    /// The last write ended a line: only then may the file rotate.
    at_line_start: bool,
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
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts the old files up by one, dropping the oldest, and starts anew.
    fn rotate(&mut self) -> io::Result<()> {
        let _ = fs::remove_file(self.rotated(self.files));
        for n in (1..self.files).rev() {
            let from = self.rotated(n);
            if from.exists() {
                fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        if self.files == 0 {
            fs::remove_file(&self.path)?;
        } else {
            fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingFile {
    /// Rotates between lines; what would pass the limit within a line is cut.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if self.at_line_start && self.written > 0 && self.written + len > self.max_bytes {
            self.rotate()?;
        }
        let room = self.max_bytes.saturating_sub(self.written);
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
