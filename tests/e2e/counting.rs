use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::http_client::run_load;
use crate::support::Stack;

#[test]
fn twenty_thousand_concurrent_hits_are_each_counted_once() {
    let stack = Stack::up("counting", 3);
    let before = stack.counter_and_rows();

    let report = run_load(stack.http_addr(), 32, 20_000, Arc::new(AtomicU64::new(0)));

    assert!(
        report.errors.is_empty(),
        "failed requests: {:?}",
        &report.errors[..report.errors.len().min(5)]
    );
    assert_eq!(
        report.ok(),
        20_000,
        "every request answered 200: {:?}",
        report.statuses
    );
    let after = stack.counter_and_rows();
    assert_eq!(
        after.counter - before.counter,
        report.ok(),
        "counter == 200 responses"
    );
    assert_eq!(
        after.rows - before.rows,
        report.ok(),
        "new access_log rows == 200 responses"
    );
    assert_eq!(
        report.per_instance.len(),
        3,
        "all three instances served: {:?}",
        report.per_instance
    );
}
