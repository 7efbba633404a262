use std::time::{Duration, Instant};

use crate::http_client::{Client, Load};
use crate::support::{
    Stack, assert_each_request_counted_once, assert_every_200_counted_and_at_most_the_503s_more,
    assert_only_200_and_503, metric_value, wait_for,
};

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

/// SIGTERM while the database hangs: the instance stops within
/// SHUTDOWN_TIMEOUT_MS on its own, instead of outlasting the container's
/// grace period. The hits it holds are answered 502 (or not at all, for the
/// batch stuck in flight), which nginx tries on another replica with the same
/// request id: no client sees a 502, and no hit is counted twice.
#[test]
fn sigterm_while_the_database_hangs_stops_within_the_shutdown_timeout() {
    let mut stack = Stack::up_with("sigterm-hung", 2, &[("SHUTDOWN_TIMEOUT_MS", "3000")]);
    let before = stack.counter_and_rows();
    let metrics = stack.metrics_addr(1);
    stack.signal("mysqld", "STOP");
    let load = Load::start(stack.http_addr(), 16, 48);
    // A batch is in flight on instance 1, and more hits queue behind it.
    wait_for(Duration::from_secs(20), "hits queued on instance 1", || {
        Client::new(metrics)
            .get("/metrics")
            .is_ok_and(|r| metric_value(&r.body, "webcluster_hit_queue_depth") >= 1.0)
    });
    let started = Instant::now();
    stack.kill_instance(1, "TERM");
    stack.wait_instance_exit(1, Duration::from_secs(30));
    let took = started.elapsed();
    stack.signal("mysqld", "CONT");
    let report = load.join();

    assert!(
        took < Duration::from_secs(6),
        "stopped {took:?} after SIGTERM, with SHUTDOWN_TIMEOUT_MS 3000"
    );
    let log = stack.instance_log(1);
    assert!(log.contains("stopped:"), "it exited by itself:\n{log}");
    assert_eq!(
        report.statuses.get(&502),
        None,
        "no client sees a 502: {:?} {:?}",
        report.statuses,
        report.errors
    );
    assert_only_200_and_503(&report, 48);
    assert_every_200_counted_and_at_most_the_503s_more(&report, before, stack.counter_and_rows());
}
