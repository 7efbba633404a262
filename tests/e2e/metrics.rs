//! Each instance's `GET /metrics` (METRICS_ADDR): figures that agree with
//! what the test sent, a format Prometheus parses, never reachable through
//! nginx; and the instance's log file, rotated within its bounds.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::http_client::{Client, Load};
use crate::support::{
    Stack, assert_each_request_counted_once, metric_value, wait_for, wait_for_200,
};

fn scrape(stack: &Stack, i: usize) -> String {
    let response = Client::new(stack.metrics_addr(i))
        .get("/metrics")
        .unwrap_or_else(|e| panic!("scrape instance {i}: {e}"));
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        response.headers
    );
    response.body
}

fn total(stack: &Stack, instances: usize, series: &str) -> f64 {
    (1..=instances)
        .map(|i| metric_value(&scrape(stack, i), series))
        .sum()
}

#[test]
fn metrics_agree_with_the_load_and_parse_as_openmetrics() {
    let stack = Stack::up("metrics", 2);
    let hits = r#"webcluster_http_requests_total{route="/",status="200"}"#;
    let before = stack.counter_and_rows();
    let (hits_before, recorded_before) = (
        total(&stack, 2, hits),
        total(&stack, 2, "webcluster_hits_recorded_total"),
    );

    let report = Load::start(stack.http_addr(), 8, 600).join();
    assert_each_request_counted_once(&report, 600, before, stack.counter_and_rows());

    let ok = report.ok() as f64;
    assert_eq!(total(&stack, 2, hits) - hits_before, ok, "GET / 200s");
    assert_eq!(
        total(&stack, 2, "webcluster_hits_recorded_total") - recorded_before,
        ok,
        "hits recorded == 200s counted"
    );
    assert!(
        total(&stack, 2, "webcluster_hit_batch_size_sum") >= ok,
        "every hit went through a batch"
    );
    assert_eq!(
        total(&stack, 2, "webcluster_hit_queue_depth"),
        0.0,
        "nothing is left queued"
    );
    // Each instance served some of the load, so each has these.
    for i in 1..=2 {
        let text = scrape(&stack, i);
        for series in [
            r#"webcluster_http_request_duration_seconds_count{route="/"}"#,
            r#"webcluster_db_call_duration_seconds_count{call="record_hits"}"#,
            "webcluster_process_resident_memory_bytes",
            "webcluster_process_open_fds",
            "webcluster_process_threads",
        ] {
            assert!(
                metric_value(&text, series) > 0.0,
                "instance {i}: {series} in\n{text}"
            );
        }
        assert_eq!(metric_value(&text, "webcluster_db_pool_waiting"), 0.0);
        parses_as_openmetrics(&text);
    }
}

#[test]
fn metrics_are_not_served_through_nginx() {
    let stack = Stack::up("metrics-nginx", 1);
    let mut client = Client::new(stack.http_addr());
    for path in ["/metrics", "/metrics/", "/metrics?x=1"] {
        let response = client.get(path).expect("answer");
        assert_eq!(response.status, 404, "{path}: {}", response.body);
        assert!(!response.body.contains("webcluster_"), "{path}");
    }
    // The app's port does not serve them either: only METRICS_ADDR does.
    let direct = Client::new(stack.instance_addr(1))
        .get("/metrics")
        .expect("answer");
    assert_eq!(direct.status, 404);
}

#[test]
fn a_database_outage_shows_as_unavailable_errors() {
    let mut stack = Stack::up("metrics-outage", 1);
    let unavailable = r#"webcluster_db_errors_total{kind="unavailable"}"#;
    let before = total(&stack, 1, unavailable);
    stack.stop_mysql();
    let mut client = Client::new(stack.http_addr());
    let mut refused = 0.0;
    for _ in 0..5 {
        let response = client.get("/showcount").expect("answer");
        assert_eq!(response.status, 503, "{}", response.body);
        refused += 1.0;
    }
    assert!(
        total(&stack, 1, unavailable) - before >= refused,
        "each 503 counted as unavailable"
    );
}

/// Python's `prometheus_client` (PyPI) reads the text as Prometheus would.
fn parses_as_openmetrics(text: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics_format.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python3 exits");
    assert!(
        output.status.success(),
        "the exposition does not parse: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_log_file_rotates_within_its_bounds() {
    const MAX: u64 = 8192;
    const FILES: u64 = 2;
    let stack = Stack::up_with(
        "log-rotation",
        1,
        &[("LOG_MAX_BYTES", "8192"), ("LOG_FILES", "2")],
    );
    let dir = stack.app_log_dir();
    let ip = stack.instance_ip(1);
    let prefix = format!("webcluster-{ip}.log");
    let instance_bytes = || -> (u64, usize) {
        let files: Vec<u64> = std::fs::read_dir(&dir)
            .expect("log dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .collect();
        (files.iter().sum(), files.len())
    };
    // About 100 bytes a line: 600 requests write about 7 files' worth.
    let load = Load::start(stack.http_addr(), 4, 600);
    let mut largest = 0;
    while !load.is_finished() {
        largest = largest.max(instance_bytes().0);
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = load.join();
    assert_eq!(report.ok(), 600, "{:?}", report.statuses);
    wait_for(Duration::from_secs(10), "the rotated files", || {
        instance_bytes().1 == FILES as usize + 1
    });
    let (bytes, files) = instance_bytes();
    largest = largest.max(bytes);
    assert!(
        largest <= MAX * (FILES + 1),
        "{largest} bytes of logs > {MAX} x ({FILES} + 1)"
    );
    assert_eq!(files, 3, "the current file and two rotated ones");
    let current = std::fs::read_to_string(dir.join(&prefix)).expect("current log");
    assert!(current.ends_with('\n'), "whole lines");
}

/// Idle connections cannot lock a scraper out: each connection ends after
/// its scrape, and one that sends nothing is closed within seconds.
#[test]
fn idle_connections_never_lock_a_scraper_out() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let stack = Stack::up("metrics-idle", 1);
    let addr = stack.metrics_addr(1);
    // Scrapers that would keep their connections for the next scrape.
    let kept: Vec<TcpStream> = (0..32)
        .map(|i| {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer)
                .unwrap_or_else(|e| panic!("scrape {i}: the server closes after it, not {e}"));
            assert!(answer.starts_with(b"HTTP/1.1 200"), "scrape {i}");
            conn
        })
        .collect();
    // And connections that never send a thing.
    let silent: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    wait_for_200(
        addr,
        "/metrics",
        Duration::from_secs(10),
        "a new scrape to be answered",
    );
    drop((kept, silent));
}
