use crate::http_client::Load;
use crate::support::{Stack, assert_each_request_counted_once};

/// `up` applies sql/ every time, as the containers' schema step will; the
/// procedures are dropped and re-created under the running app.
#[test]
fn re_applying_sql_under_load_fails_no_request_and_loses_nothing() {
    let mut stack = Stack::up("reapply", 3);
    let before = stack.counter_and_rows();
    let load = Load::start(stack.http_addr(), 32, 15_000);
    load.wait_for_progress(1_000);
    let mut applies_under_load = 0;
    while !load.is_finished() {
        stack.ensure_up(3);
        applies_under_load += 1;
    }
    let report = load.join();

    assert!(
        applies_under_load >= 1,
        "sql/ was re-applied while the load ran"
    );
    assert_each_request_counted_once(&report, 15_000, before, stack.counter_and_rows());
}
