use crate::http_client::Load;
use crate::support::{Stack, assert_each_request_counted_once};

#[test]
fn twenty_thousand_concurrent_hits_are_each_counted_once() {
    let stack = Stack::up("counting", 3);
    let before = stack.counter_and_rows();

    let report = Load::start(stack.http_addr(), 32, 20_000).join();

    assert_each_request_counted_once(&report, 20_000, before, stack.counter_and_rows());
    assert_eq!(
        report.per_instance.len(),
        3,
        "all three instances served: {:?}",
        report.per_instance
    );
}
