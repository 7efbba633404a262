use std::time::{Duration, Instant};

use crate::http_client::Client;
use crate::support::{Stack, wait_for};

#[test]
fn stopping_mysql_gives_503s_and_service_recovers_when_it_returns() {
    let mut stack = Stack::up("outage", 3);
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
    wait_for(Duration::from_secs(30), "the app to serve again", || {
        Client::new(addr).get("/").is_ok_and(|r| r.status == 200)
    });
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

#[test]
fn a_stalled_mysql_gives_503s_within_the_read_timeout_and_service_resumes() {
    let mut stack = Stack::up("stall", 1);
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
    wait_for(Duration::from_secs(30), "the app to serve again", || {
        Client::new(addr).get("/").is_ok_and(|r| r.status == 200)
    });
}
