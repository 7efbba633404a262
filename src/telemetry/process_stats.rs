//! The process's own figures from /proc, for the metrics: read on each
//! scrape, 0 where /proc cannot tell.

use std::fs;

#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    pub resident_bytes: usize,
    pub open_fds: usize,
    pub threads: usize,
}

pub fn sample() -> ProcessStats {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    ProcessStats {
        resident_bytes: status_field(&status, "VmRSS:").saturating_mul(1024),
        open_fds: fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
        threads: status_field(&status, "Threads:"),
    }
}

/// The number after `name` in /proc/self/status ("VmRSS:  1234 kB" -> 1234).
fn status_field(status: &str, name: &str) -> usize {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_proc_status() {
        let status = "Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t9\n";
        assert_eq!(status_field(status, "VmRSS:"), 2048);
        assert_eq!(status_field(status, "Threads:"), 9);
        assert_eq!(status_field(status, "Missing:"), 0);
    }

    #[test]
    fn this_process_has_memory_descriptors_and_threads() {
        let stats = sample();
        assert!(
            stats.resident_bytes > 0 && stats.open_fds > 0 && stats.threads > 0,
            "{stats:?}"
        );
    }
}
