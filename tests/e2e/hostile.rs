//! Hostile or merely unusual input, through nginx and straight at an
//! instance: it gets an HTTP answer, and hurts no one else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::http_client::{Client, Load};
use crate::raw::{self, get_with_header};
use crate::support::{
    Stack, assert_each_request_counted_once, metric_value, process_alive, rss_bytes, wait_for,
    wait_for_200, worker_threads,
};

/// The stack's WORKERS (the default).
const WORKERS: usize = 8;
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

/// Requests nginx passes on (the app must answer them) or refuses itself.
fn hostile_through_nginx() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = b"X-Big: ".to_vec();
    big.resize(64 * 1024, b'a');
    vec![
        (
            "UTF-8 cookie",
            get_with_header(b"/showcount", b"Cookie: theme=caf\xc3\xa9"),
        ),
        (
            "UTF-8 in another header",
            get_with_header(b"/showcount", b"User-Agent: M\xc3\xbcller \xff\xfe"),
        ),
        (
            "raw 0x80-0xFF in the path",
            get_with_header(b"/caf\xc3\xa9\x80\xff", b"X-Ok: 1"),
        ),
        (
            "NUL in a header value",
            get_with_header(b"/", b"X-Nul: a\x00b"),
        ),
        ("CR in a header value", get_with_header(b"/", b"X-Cr: a\rb")),
        ("a 64 KB header", get_with_header(b"/", &big)),
    ]
}

/// 200 new clients' requests all get 2xx, each counted once, and all three
/// replicas serve them: none was marked down.
fn assert_others_unharmed(stack: &Stack, after: &str) {
    let before = stack.counter_and_rows();
    let report = Load::start(stack.http_addr(), 20, 200).join();
    assert_each_request_counted_once(&report, 200, before, stack.counter_and_rows());
    assert_eq!(
        report.per_instance.len(),
        3,
        "after {after}, every replica still serves: {:?}",
        report.per_instance
    );
}

#[test]
fn hostile_requests_through_nginx_are_answered_to_their_sender_only() {
    let stack = Stack::up("hostile-edge", 3);
    let addr = stack.http_addr();

    for (what, request) in hostile_through_nginx() {
        let answer = raw::exchange(addr, &request);
        let status = answer
            .status
            .unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
        match what {
            "UTF-8 cookie" | "UTF-8 in another header" => assert_eq!(status, 200, "{what}"),
            "a 64 KB header" => assert!(matches!(status, 400 | 431), "{what}: {status}"),
            _ => assert_eq!(status, 400, "{what}"),
        }
        assert_others_unharmed(&stack, what);
    }
}

#[test]
fn a_utf8_cookie_beside_the_sticky_one_keeps_the_client_pinned() {
    let stack = Stack::up("hostile-cookie", 3);
    let mut client = Client::new(stack.http_addr());
    let home = client
        .get("/")
        .expect("first request")
        .body
        .trim()
        .to_owned();

    // nginx routes on its own cookie, the app recognises its internal_ip.
    let route = &client.jar["webcluster_route"];
    for _ in 0..12 {
        let cookie = format!(
            "Cookie: theme=caf\u{e9}; webcluster_route={route}; internal_ip={home}; x=\u{fc}"
        );
        let answer = raw::exchange(stack.http_addr(), &get_with_header(b"/", cookie.as_bytes()));
        assert_eq!(answer.status, Some(200), "{answer:?}");
        assert_eq!(answer.body().trim(), home, "stayed on its replica");
        assert!(
            !answer.text.contains("Set-Cookie: internal_ip="),
            "the app did not re-pin the client: {answer:?}"
        );
    }
    assert_others_unharmed(&stack, "UTF-8 cookies with a pin");
}

#[test]
fn a_hostile_request_every_second_for_30_s_leaves_every_other_request_2xx() {
    let stack = Stack::up("hostile-storm", 3);
    let before = stack.counter_and_rows();
    let pids: Vec<u32> = (1..=3).map(|i| stack.instance_pid(i)).collect();

    let load = Load::paced(stack.http_addr(), 20, 1_000, Duration::from_secs(30));
    let attacks = hostile_through_nginx();
    let started = Instant::now();
    for second in 0..30_u32 {
        let (what, request) = &attacks[second as usize % attacks.len()];
        let answer = raw::exchange(stack.http_addr(), request);
        assert!(answer.status.is_some(), "{what} got no answer");
        // And one straight at a replica, which used to kill the process.
        let bomb = content_length_bomb(if second % 2 == 0 {
            "1152921504606846976"
        } else {
            "18446744073709551615"
        });
        let replica = stack.instance_addr(second as usize % 3 + 1);
        assert!(
            raw::exchange(replica, &bomb).status.is_some(),
            "bomb answered"
        );
        let next = started + Duration::from_secs(u64::from(second) + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let report = load.join();

    assert_each_request_counted_once(&report, 1_000, before, stack.counter_and_rows());
    assert_eq!(report.per_instance.len(), 3, "{:?}", report.per_instance);
    for pid in pids {
        assert!(process_alive(pid), "replica pid {pid} survived");
        assert_eq!(worker_threads(pid), WORKERS, "pid {pid} kept its workers");
    }
}

fn content_length_bomb(length: &str) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nHost: bomb\r\nContent-Length: {length}\r\n\r\n").into_bytes()
}

/// The instance lives, answers /healthz within 1 s, stays small and keeps its workers.
fn assert_unharmed(addr: SocketAddr, pid: u32, after: &str) {
    assert!(process_alive(pid), "after {after}: the instance is alive");
    let started = Instant::now();
    let health = Client::new(addr).get("/healthz").expect("healthz answers");
    assert_eq!(health.status, 200, "after {after}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "after {after}: /healthz took {:?}",
        started.elapsed()
    );
    assert_rss_and_workers(pid, after);
}

fn assert_rss_and_workers(pid: u32, when: &str) {
    let rss = rss_bytes(pid);
    assert!(rss < RSS_LIMIT, "{when}: RSS {} MiB", rss >> 20);
    assert_eq!(worker_threads(pid), WORKERS, "{when}: workers");
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

#[test]
fn an_instance_survives_every_hostile_connection_pattern() {
    let stack = Stack::up("hostile-direct", 1);
    let addr = stack.instance_addr(1);
    let pid = stack.instance_pid(1);
    assert_unharmed(addr, pid, "start");

    for length in ["1152921504606846976", "18446744073709551615"] {
        let answer = raw::exchange(addr, &content_length_bomb(length));
        assert_eq!(
            answer.status,
            Some(200),
            "Content-Length {length}: {answer:?}"
        );
        assert_eq!(answer.header("Connection"), Some("close"), "{answer:?}");
        assert_unharmed(addr, pid, &format!("Content-Length: {length}"));
    }

    // Heads promising a body that never comes: answered, and no worker waits for it.
    let mut promised: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
                .expect("send a head");
            stream
        })
        .collect();
    for stream in &mut promised {
        let mut head = [0; 12];
        stream.read_exact(&mut head).expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    assert_unharmed(addr, pid, "20 heads without their bodies (still open)");
    drop(promised);

    // One byte each, then nothing: each costs a connection, not a worker, and
    // gets 408 when its head is overdue.
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(b"G").expect("send a byte");
            stream
        })
        .collect();
    assert_unharmed(addr, pid, "200 stalled connections (still open)");
    for stream in &mut stalled {
        let answer = raw::read_answer(stream);
        assert_eq!(answer.status, Some(408), "{answer:?}");
    }
    drop(stalled);
    assert_unharmed(addr, pid, "200 stalled connections");

    // A header line that never ends is cut off at MAX_HEADER_BYTES.
    let mut endless = connect(addr);
    endless
        .write_all(b"GET / HTTP/1.1\r\nX-Endless: ")
        .expect("start the line");
    let chunk = [b'a'; 16 * 1024];
    for _ in 0..64 {
        if endless.write_all(&chunk).is_err() {
            break;
        }
    }
    assert_rss_and_workers(pid, "an endless header line");
    let answer = raw::read_answer(&mut endless);
    assert_eq!(answer.status, Some(431), "{answer:?}");
    assert_unharmed(addr, pid, "an endless header line");

    // 2,000 idle connections: up to MAX_CONNECTIONS (512) are held, the rest
    // are answered 503 at once; none waits in a queue. They are opened 100 at
    // a time, each batch taken before the next: a burst larger than the
    // kernel's accept queue loses connections there (SYN cookies keep no
    // state), before the instance could see them.
    let mut idle: Vec<TcpStream> = Vec::with_capacity(2_000);
    for _ in 0..20 {
        idle.extend((0..100).map(|_| connect(addr)));
        let held = idle.len().min(512);
        wait_for(
            Duration::from_secs(30),
            "the instance to hold its share",
            || open_connections(&stack) >= held,
        );
        count_refusals(&idle, idle.len() - held);
    }
    let refused = count_refusals(&idle, 2_000 - 512);
    assert!(refused >= 2_000 - 512, "{refused} of 2,000 answered 503");
    assert_rss_and_workers(pid, "2,000 idle connections (still open)");
    drop(idle);
    wait_for_200(
        addr,
        "/healthz",
        Duration::from_secs(10),
        "the instance to serve again",
    );
    assert_unharmed(addr, pid, "2,000 idle connections");
}

/// A `GET /` straight at an instance, with `framing` (header lines) and then `body`.
fn get_root_framed(framing: &str, body: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: hostile\r\n{framing}\r\n{body}").into_bytes()
}

#[test]
fn ambiguous_or_malformed_framing_is_400_closed_and_never_counted() {
    let stack = Stack::up("hostile-framing", 1);
    let addr = stack.instance_addr(1);
    let before = stack.counter_and_rows();

    for (what, request) in [
        (
            "Content-Length beside Transfer-Encoding",
            get_root_framed(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
        ),
        (
            "a chunk size of zzzz",
            get_root_framed("Transfer-Encoding: chunked\r\n", "zzzz\r\n\r\n"),
        ),
    ] {
        let answer = raw::exchange(addr, &request);
        assert_eq!(answer.status, Some(400), "{what}: {answer:?}");
        assert_eq!(
            answer.header("Connection"),
            Some("close"),
            "{what}: {answer:?}"
        );
        assert!(answer.closed, "{what}: the instance closed the connection");
    }
    assert_eq!(
        stack.counter_and_rows(),
        before,
        "neither reached the handler, which counts every GET /"
    );

    // A well-formed chunked body still reaches it, and is counted once.
    let valid = get_root_framed(
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
    );
    let answer = raw::exchange(addr, &valid);
    assert_eq!(answer.status, Some(200), "{answer:?}");
    let after = stack.counter_and_rows();
    assert_eq!(
        (after.counter - before.counter, after.rows - before.rows),
        (1, 1),
        "the valid request counted once"
    );
}

/// The instance's open client connections, from its own metrics.
fn open_connections(stack: &Stack) -> usize {
    let text = Client::new(stack.metrics_addr(1))
        .get("/metrics")
        .map(|r| r.body)
        .unwrap_or_default();
    metric_value(&text, "webcluster_http_open_connections") as usize
}

/// How many of `streams` were answered 503 and closed, waiting (at most
/// 20 s) until at least `expected` were.
fn count_refusals(streams: &[TcpStream], expected: usize) -> usize {
    let mut refused = vec![false; streams.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (stream, done) in streams.iter().zip(refused.iter_mut()).filter(|(_, d)| !**d) {
            stream.set_nonblocking(true).expect("nonblocking");
            let mut peek = [0; 12];
            if matches!(stream.peek(&mut peek), Ok(12)) {
                assert_eq!(&peek, b"HTTP/1.1 503", "a refused connection's answer");
                *done = true;
            }
        }
        let count = refused.iter().filter(|d| **d).count();
        if count >= expected || Instant::now() >= deadline {
            return count;
        }
        thread::sleep(Duration::from_millis(100));
    }
}
