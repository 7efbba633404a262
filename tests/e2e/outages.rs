use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::http_client::{Client, Load};
use crate::support::{
    Stack, assert_each_request_counted_once, assert_every_200_counted_and_at_most_the_503s_more,
    assert_only_200_and_503, metric_value, wait_for, wait_for_200,
};

/// MySQL down for longer than DB_FAILOVER_WAIT_MS: past the wait, 503s with
/// Retry-After, never a hang; service comes back with MySQL.
#[test]
fn stopping_mysql_gives_503s_and_service_recovers_when_it_returns() {
    let mut stack = Stack::up_with("outage", 3, &[("DB_FAILOVER_WAIT_MS", "2000")]);
    let mut client = Client::new(stack.http_addr());
    assert_eq!(client.get("/").expect("request").status, 200);
    let before = stack.counter_and_rows();

    stack.stop_mysql();

    for path in ["/", "/showcount", "/", "/readyz"] {
        let started = Instant::now();
        let response = client
            .get(path)
            .expect("the app answers while the database is down");
        assert_eq!(response.status, 503, "{path} while the database is down");
        assert_eq!(response.header("Retry-After"), Some("1"));
        // The stack's DB timeouts are 2-5 s; the client would wait 30 s for a hang.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path} answered without hanging"
        );
    }
    let healthz = client.get("/healthz").expect("healthz");
    assert_eq!(healthz.status, 200, "the process stays alive");

    stack.ensure_up(3);

    let addr = stack.http_addr();
    wait_for_200(addr, "/", Duration::from_secs(30), "the app to serve again");
    let mut served = 1;
    for _ in 0..20 {
        assert_eq!(client.get("/").expect("request").status, 200);
        served += 1;
    }
    let after = stack.counter_and_rows();
    assert_eq!(
        after.counter, after.rows,
        "counter == rows after the outage"
    );
    assert_eq!(
        after.rows - before.rows,
        served,
        "every 200 after recovery was counted"
    );
    assert_eq!(client.get("/readyz").expect("readyz").status, 200);
}

/// Without a failover wait, a stalled MySQL costs a request one read timeout.
#[test]
fn a_stalled_mysql_gives_503s_within_the_read_timeout_and_service_resumes() {
    let mut stack = Stack::up_with("stall", 1, &[("DB_FAILOVER_WAIT_MS", "0")]);
    let mut client = Client::new(stack.http_addr());
    assert_eq!(client.get("/").expect("request").status, 200);

    // Stopped, not killed: connections stay open and the server never answers.
    stack.signal("mysqld", "STOP");
    let answers: Vec<(u16, Duration)> = ["/", "/showcount", "/"]
        .iter()
        .map(|path| {
            let started = Instant::now();
            let status = client
                .get(path)
                .expect("the app answers while the database stalls")
                .status;
            (status, started.elapsed())
        })
        .collect();
    stack.signal("mysqld", "CONT");

    for (status, elapsed) in &answers {
        assert_eq!(*status, 503, "answers while stalled: {answers:?}");
        // DB_READ_TIMEOUT_MS is 5 s; a second timeout in a row would show as 10 s.
        assert!(
            *elapsed < Duration::from_secs(9),
            "one read timeout at most: {answers:?}"
        );
    }
    let addr = stack.http_addr();
    wait_for_200(addr, "/", Duration::from_secs(30), "the app to serve again");
}

/// A database stall longer than nginx's proxy_read_timeout (30 s), under
/// more clients than the workers can serve in that time: clients get the
/// app's 503 with Retry-After, never nginx's 502 or 504, and nginx tries no
/// request on more than two replicas.
#[test]
fn a_stall_longer_than_nginx_waits_gives_the_apps_503_and_at_most_two_attempts() {
    let mut stack = Stack::up("long-stall", 3);
    let before = stack.counter_and_rows();
    // 200 clients over 3 × 8 workers: each stalled call holds a worker for a
    // read timeout, so without shedding the queues would outlast nginx.
    let load = Load::paced(stack.http_addr(), 200, 3_000, Duration::from_secs(45));
    load.wait_for_progress(300);

    stack.signal("mysqld", "STOP");
    // The stall is the experiment, not a wait for a condition.
    thread::sleep(Duration::from_secs(35));
    stack.signal("mysqld", "CONT");
    let report = load.join();
    let after = stack.counter_and_rows();

    let unavailable = assert_only_200_and_503(&report, 3_000);
    assert!(unavailable > 0, "the stall was felt: {:?}", report.statuses);
    assert_eq!(
        report.without_retry_after, 0,
        "every 503 says when to retry"
    );

    // The replicas nginx tried for each request, from its access log, which
    // it writes in blocks at least once a second.
    wait_for(Duration::from_secs(10), "nginx's access log", || {
        stack.nginx_access_log().lines().count() >= 3_000
    });
    let log = stack.nginx_access_log();
    for line in log.lines() {
        let upstreams = line
            .split(" upstream=")
            .nth(1)
            .and_then(|rest| rest.split(" us=").next())
            .unwrap_or_default();
        let attempts = upstreams
            .split([',', ':'])
            .filter(|part| part.trim().contains('.'))
            .count();
        assert!(attempts <= 2, "tried on {attempts} replicas: {line}");
        assert!(
            !line.contains("\" 502 ") && !line.contains("\" 504 "),
            "{line}"
        );
    }

    assert_every_200_counted_and_at_most_the_503s_more(&report, before, after);
}

/// A lock wait ends on the server (and the transaction rolls back) before
/// the app's read timeout, so the 503 it answers means "not counted".
#[test]
fn a_lock_wait_is_rolled_back_before_the_app_gives_up_so_its_503_counted_nothing() {
    let stack = Stack::up("lock-wait", 1);
    let mut client = Client::new(stack.http_addr());
    assert_eq!(client.get("/").expect("request").status, 200);
    let before = stack.counter_and_rows();

    let mut root = stack.root_db_conn();
    root.query_drop("START TRANSACTION").expect("begin");
    root.query_drop("SELECT hits FROM hit_counter FOR UPDATE")
        .expect("lock every counter row");
    let started = Instant::now();
    let response = client.get("/").expect("the app answers");
    let waited = started.elapsed();
    root.query_drop("ROLLBACK").expect("release the locks");

    assert_eq!(response.status, 503, "answered while the rows were locked");
    assert!(
        waited < Duration::from_secs(15),
        "within nginx's patience: {waited:?}"
    );
    let log = stack.instance_log(1);
    assert!(
        log.contains("database error 1205"),
        "a lock-wait timeout:\n{log}"
    );
    assert!(
        !log.contains("outcome unknown"),
        "never an unknown outcome:\n{log}"
    );
    assert_eq!(stack.counter_and_rows(), before, "the 503 counted nothing");
    assert_eq!(client.get("/").expect("request").status, 200);
}

/// SIGKILL of MySQL mid-load, restarted within DB_FAILOVER_WAIT_MS: the
/// batches in flight and those queued behind them are held and tried again
/// once MySQL is back; the request ids make that safe, so no client sees an
/// error and every hit is counted exactly once.
#[test]
fn killing_mysql_mid_load_and_restarting_it_within_the_wait_fails_no_request() {
    let mut stack = Stack::up("mysql-kill", 3);
    let before = stack.counter_and_rows();
    let load = Load::start(stack.http_addr(), 32, 8_000);
    load.wait_for_progress(2_000);
    stack.signal("mysqld", "KILL");
    stack.ensure_up(3);
    let report = load.join();

    assert_each_request_counted_once(&report, 8_000, before, stack.counter_and_rows());
}

/// record_hits re-created with another shape (an extra column, as a rolling
/// change of sql/ might leave it): each hit gets a 503 at once, never a hang;
/// the committer carries on, and once the procedure is right again hits are
/// counted as before.
#[test]
fn a_record_hits_of_another_shape_costs_503s_never_the_committer() {
    let stack = Stack::up("wrong-shape", 1);
    let mut client = Client::new(stack.http_addr());
    assert_eq!(client.get("/").expect("GET /").status, 200);
    let mut root = stack.root_db_conn();
    let original: String = root
        .query_first::<mysql::Row, _>("SHOW CREATE PROCEDURE record_hits")
        .expect("show record_hits")
        .and_then(|row| row.get("Create Procedure"))
        .expect("record_hits exists");
    root.query_drop("DROP PROCEDURE record_hits")
        .expect("drop record_hits");
    root.query_drop(
        "CREATE PROCEDURE record_hits(IN p_hits JSON) SQL SECURITY DEFINER \
         SELECT 1 AS recorded, 2 AS added_later",
    )
    .expect("create record_hits of another shape");

    for _ in 0..5 {
        let started = Instant::now();
        let answer = client.get("/").expect("an answer, not a hang");
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "at once, not after a timeout: {:?}",
            started.elapsed()
        );
    }
    let metrics = Client::new(stack.metrics_addr(1))
        .get("/metrics")
        .expect("scrape");
    assert!(
        metric_value(
            &metrics.body,
            "webcluster_db_errors_total{kind=\"unexpected_reply\"}"
        ) >= 5.0,
        "{}",
        metrics.body
    );

    root.query_drop("DROP PROCEDURE record_hits")
        .expect("drop the stand-in");
    root.query_drop(&original).expect("restore record_hits");
    let before = stack.counter_and_rows();
    assert_eq!(client.get("/").expect("GET /").status, 200);
    assert_eq!(stack.counter_and_rows().rows, before.rows + 1);
}
