use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::http_client::run_load;
use crate::support::{Stack, assert_each_request_counted_once, wait_for};

/// `up` applies sql/ every time, as the containers' schema step will; the
/// procedures are dropped and re-created under the running app.
#[test]
fn re_applying_sql_under_load_fails_no_request_and_loses_nothing() {
    let mut stack = Stack::up("reapply", 3);
    let before = stack.counter_and_rows();
    let addr = stack.http_addr();
    let progress = Arc::new(AtomicU64::new(0));
    let load = {
        let progress = Arc::clone(&progress);
        thread::spawn(move || run_load(addr, 32, 15_000, progress))
    };

    wait_for(Duration::from_secs(60), "the load to get going", || {
        progress.load(Ordering::Relaxed) >= 1_000
    });
    let mut applies_under_load = 0;
    while !load.is_finished() {
        stack.ensure_up(3);
        applies_under_load += 1;
    }
    let report = load.join().expect("load thread");

    assert!(
        applies_under_load >= 1,
        "sql/ was re-applied while the load ran"
    );
    assert_each_request_counted_once(&report, 15_000, before, stack.counter_and_rows());
}
