use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::http_client::run_load;
use crate::support::{Stack, assert_each_request_counted_once, wait_for};

#[test]
fn sigterm_under_load_loses_no_request_and_the_counter_still_equals_the_rows() {
    let mut stack = Stack::up("sigterm", 3);
    let before = stack.counter_and_rows();
    let addr = stack.http_addr();
    let progress = Arc::new(AtomicU64::new(0));
    let load = {
        let progress = Arc::clone(&progress);
        thread::spawn(move || run_load(addr, 32, 12_000, progress))
    };

    wait_for(Duration::from_secs(60), "the load to get going", || {
        progress.load(Ordering::Relaxed) >= 3_000
    });
    stack.kill_instance(1, "TERM");
    stack.wait_instance_exit(1, Duration::from_secs(30));
    let report = load.join().expect("load thread");

    assert_each_request_counted_once(&report, 12_000, before, stack.counter_and_rows());
    let log = stack.instance_log(1);
    assert!(
        log.contains("stopped: Drained"),
        "instance 1 drained and exited cleanly:\n{log}"
    );
}
