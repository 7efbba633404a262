use std::time::Duration;

use crate::http_client::Load;
use crate::support::{Stack, assert_each_request_counted_once};

#[test]
fn sigterm_under_load_loses_no_request_and_the_counter_still_equals_the_rows() {
    let mut stack = Stack::up("sigterm", 3);
    let before = stack.counter_and_rows();
    let load = Load::start(stack.http_addr(), 32, 12_000);
    load.wait_for_progress(3_000);
    stack.kill_instance(1, "TERM");
    stack.wait_instance_exit(1, Duration::from_secs(30));
    let report = load.join();

    assert_each_request_counted_once(&report, 12_000, before, stack.counter_and_rows());
    let log = stack.instance_log(1);
    assert!(
        log.contains("stopped: Drained"),
        "instance 1 drained and exited cleanly:\n{log}"
    );
    // Under 32 connections, hits that arrived during a commit shared the next one.
    let (hits, batches) = committed(&log).expect("the instance logged its commits");
    assert!(
        hits > batches,
        "{hits} hits in {batches} batches: hits were grouped"
    );
}

/// The instance's exit line: "committed H hits in B batches".
fn committed(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.contains("committed "))?;
    let mut words = line
        .split_whitespace()
        .skip_while(|w| *w != "committed")
        .skip(1);
    let hits = words.next()?.parse().ok()?;
    let batches = words.nth(2)?.parse().ok()?;
    Some((hits, batches))
}
