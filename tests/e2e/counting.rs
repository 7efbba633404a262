use std::time::Duration;

use mysql::prelude::Queryable;

use crate::http_client::{Client, Load};
use crate::support::{Stack, assert_each_request_counted_once, wait_for};

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

#[test]
fn one_request_id_finds_a_hit_in_nginx_s_log_the_app_s_log_and_the_database() {
    let stack = Stack::up("request-id", 1);
    let response = Client::new(stack.http_addr())
        .get("/?trace")
        .expect("GET /");
    assert_eq!(response.status, 200);
    // nginx flushes its buffered access log at least once a second.
    let mut id = String::new();
    wait_for(Duration::from_secs(10), "nginx to log the request", || {
        let log = stack.nginx_access_log();
        let line = log.lines().find(|l| l.contains("\"GET /?trace "));
        id = line
            .and_then(|l| l.rsplit_once(" id="))
            .map(|(_, id)| id.trim().to_owned())
            .unwrap_or_default();
        id.len() == 32
    });
    wait_for(
        Duration::from_secs(10),
        "the app to log the request",
        || {
            stack
                .instance_log(1)
                .lines()
                .any(|l| l.contains(" GET /?trace 200 ") && l.ends_with(&format!(" id={id}")))
        },
    );
    let rows: Vec<String> = stack
        .root_db_conn()
        .exec(
            "SELECT request_id FROM access_log WHERE request_id = ?",
            (&id,),
        )
        .expect("query access_log");
    assert_eq!(rows, vec![id.clone()], "the hit's row carries nginx's id");
}
