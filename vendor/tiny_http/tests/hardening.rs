//! One test per hardening patch (../../README.md lists them): a real server on
//! a loopback port, a raw client that sends exactly the bytes under test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Response, Server};

/// A server with short timeouts and an echo worker: the body names the
/// method, the path and the bytes of the Cookie header.
struct Echo {
    server: Arc<Server>,
    addr: SocketAddr,
    /// Requests the workers were handed.
    handled: Arc<AtomicUsize>,
}

impl Echo {
    fn start(limits: Limits, workers: usize) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());
        let handled = Arc::new(AtomicUsize::new(0));
        for _ in 0..workers {
            let server = Arc::clone(&server);
            let handled = Arc::clone(&handled);
            thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    handled.fetch_add(1, Ordering::SeqCst);
                    let cookie = request
                        .header_bytes("cookie")
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    let body = format!("{} {} {}", request.method(), request.url(), cookie);
                    let _ = request.respond(Response::from_string(body));
                }
            });
        }
        Echo {
            server,
            addr,
            handled,
        }
    }

    fn with_defaults() -> Echo {
        Echo::start(short_limits(), 2)
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Sends `bytes` on a new connection; returns everything until the server closes.
    fn exchange(&self, bytes: &[u8]) -> String {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        read_to_close(&mut stream)
    }

    /// Sends `bytes` on a new connection; returns the answer, which must end
    /// with the server closing the connection (not with the read timeout).
    fn exchange_closed(&self, bytes: &[u8]) -> String {
        let mut stream = self.connect();
        // The server may refuse before it has read everything.
        let _ = stream.write_all(bytes);
        let mut out = Vec::new();
        let end = stream.read_to_end(&mut out);
        let reply = String::from_utf8_lossy(&out).into_owned();
        assert!(
            end.is_ok(),
            "the server closed the connection: {:?} {}",
            end,
            reply
        );
        reply
    }

    /// The server still answers a plain request at once.
    fn assert_serving(&self) {
        let started = Instant::now();
        let reply = self.exchange(b"GET /alive HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered promptly"
        );
    }
}

fn short_limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_head_bytes: 4096,
        max_connections: 64,
    }
}

fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response head and its body (by Content-Length) from a kept-alive connection.
fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0];
    while !out.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        out.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&out).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn a_utf8_cookie_is_served_and_its_bytes_reach_the_handler() {
    let echo = Echo::with_defaults();
    let reply = echo.exchange(
        b"GET / HTTP/1.1\r\nCookie: theme=caf\xc3\xa9; internal_ip=10.0.0.2\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
    assert!(
        reply.ends_with("GET / theme=café; internal_ip=10.0.0.2"),
        "{}",
        reply
    );
}

#[test]
fn obs_text_in_a_header_the_handler_ignores_is_served() {
    let echo = Echo::with_defaults();
    let reply =
        echo.exchange(b"GET / HTTP/1.1\r\nUser-Agent: \xff\xfe\x80\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
}

#[test]
fn a_path_with_raw_high_bytes_is_400_with_connection_close() {
    let echo = Echo::with_defaults();
    for request in [
        &b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"[..],
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ] {
        let reply = echo.exchange(request);
        assert!(reply.starts_with("HTTP/1.1 400"), "{}", reply);
        assert!(reply.contains("Connection: close\r\n"), "{}", reply);
    }
    echo.assert_serving();
}

#[test]
fn control_characters_in_a_header_value_are_400() {
    let echo = Echo::with_defaults();
    for request in [
        &b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    ] {
        let reply = echo.exchange(request);
        assert!(reply.starts_with("HTTP/1.1 400"), "{}", reply);
    }
}

#[test]
fn an_oversized_head_is_431_and_an_endless_line_is_cut_off() {
    let echo = Echo::with_defaults();
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 8 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let reply = echo.exchange(&big);
    assert!(reply.starts_with("HTTP/1.1 431"), "{}", reply);
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);

    // A line that never ends: the server answers once the cap is passed,
    // without waiting for the rest.
    let mut stream = echo.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").unwrap();
    let chunk = [b'a'; 1024];
    let mut answered = String::new();
    for _ in 0..64 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    stream.shutdown(Shutdown::Write).ok();
    answered.push_str(&read_to_close(&mut stream));
    assert!(answered.starts_with("HTTP/1.1 431"), "{}", answered);
    echo.assert_serving();
}

#[test]
fn an_unsupported_transfer_encoding_is_501() {
    let echo = Echo::with_defaults();
    let reply = echo.exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 501"), "{}", reply);
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);
}

#[test]
fn a_malformed_or_conflicting_content_length_is_400() {
    let echo = Echo::with_defaults();
    for request in [
        &b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ] {
        let reply = echo.exchange(request);
        assert!(reply.starts_with("HTTP/1.1 400"), "{}", reply);
    }
}

#[test]
fn content_length_bombs_are_answered_and_cost_only_their_connection() {
    let echo = Echo::start(short_limits(), 1);
    for length in ["1152921504606846976", "18446744073709551615"] {
        let request = format!("GET / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
        let reply = echo.exchange(request.as_bytes());
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "{}",
            format!("{length}: {reply}")
        );
        assert!(
            reply.contains("Connection: close\r\n"),
            "{}",
            format!("{length}: {reply}")
        );
        // With one worker, a lost or blocked worker would show here.
        echo.assert_serving();
    }
}

#[test]
fn a_body_that_never_comes_blocks_no_worker() {
    let echo = Echo::start(short_limits(), 1);
    // Over the eager-read size, so the request reaches the worker at once.
    let mut held = echo.connect();
    held.write_all(b"GET / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n")
        .unwrap();
    let reply = read_response(&mut held);
    assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
    echo.assert_serving();
    // The connection's own thread gives up draining after the header timeout.
    let rest = read_to_close(&mut held);
    assert!(
        rest.is_empty(),
        "{}",
        format!("closed without another answer: {rest}")
    );
}

#[test]
fn a_small_unread_body_is_drained_and_the_connection_kept() {
    let echo = Echo::with_defaults();
    let mut stream = echo.connect();
    let body = vec![b'x'; 3000];
    stream
        .write_all(b"POST /first HTTP/1.1\r\nContent-Length: 3000\r\n\r\n")
        .unwrap();
    stream.write_all(&body).unwrap();
    stream.write_all(b"GET /second HTTP/1.1\r\n\r\n").unwrap();
    let first = read_response(&mut stream);
    let second = read_response(&mut stream);
    assert!(first.ends_with("POST /first "), "{}", first);
    assert!(second.ends_with("GET /second "), "{}", second);
}

#[test]
fn a_slow_head_is_408_and_a_silent_connection_is_closed() {
    let echo = Echo::with_defaults();
    let started = Instant::now();
    let mut slow = echo.connect();
    slow.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
    // Dribbling does not extend the deadline.
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(250));
        let _ = slow.write_all(b"a");
    }
    let reply = read_to_close(&mut slow);
    assert!(reply.starts_with("HTTP/1.1 408"), "{}", reply);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the deadline"
    );

    let mut silent = echo.connect();
    assert_eq!(read_to_close(&mut silent), "", "no request, no answer");
}

#[test]
fn connections_beyond_the_cap_get_503_at_once() {
    let echo = Echo::start(
        Limits {
            max_connections: 2,
            ..short_limits()
        },
        1,
    );
    let held: Vec<TcpStream> = (0..2).map(|_| echo.connect()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.server.num_connections() < 2 {
        assert!(Instant::now() < deadline, "the two connections are counted");
        thread::sleep(Duration::from_millis(10));
    }
    let reply = echo.exchange(b"GET / HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 503"), "{}", reply);
    assert!(reply.contains("Retry-After: 1\r\n"), "{}", reply);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.server.num_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "closed connections are uncounted"
        );
        thread::sleep(Duration::from_millis(10));
    }
    echo.assert_serving();
}

#[test]
fn a_pipelined_request_is_handed_out_only_after_the_previous_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener_with_limits(listener, None, short_limits()).unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        .unwrap();
    let first = server.recv().unwrap();
    assert_eq!(first.url(), "/1");
    let early = server.recv_timeout(Duration::from_millis(300)).unwrap();
    if let Some(second) = early {
        // Answer both before failing: the second's answer waits for the first's.
        first.respond(Response::empty(204)).unwrap();
        drop(second);
        panic!("the second request was queued before the first was answered");
    }
    first.respond(Response::empty(204)).unwrap();
    let second = server.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(second.map(|r| r.url().to_owned()).as_deref(), Some("/2"));
}

#[test]
fn connection_close_from_the_client_is_answered_with_connection_close() {
    let echo = Echo::with_defaults();
    let reply = echo.exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);
}

/// A head that declares chunked encoding, followed by `body`.
fn chunked(body: &[u8]) -> Vec<u8> {
    [
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
        body,
    ]
    .concat()
}

#[test]
fn content_length_beside_transfer_encoding_is_400_and_closes() {
    let echo = Echo::with_defaults();
    for request in [
        &b"GET / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
    ] {
        let reply = echo.exchange_closed(request);
        assert!(reply.starts_with("HTTP/1.1 400"), "{}", reply);
        assert!(reply.contains("Connection: close\r\n"), "{}", reply);
    }
    assert_eq!(
        echo.handled.load(Ordering::SeqCst),
        0,
        "no request was handed out"
    );
    echo.assert_serving();
}

#[test]
fn a_malformed_chunked_body_is_400_and_never_reaches_the_handler() {
    let echo = Echo::with_defaults();
    for body in [
        &b"zzzz\r\n\r\n"[..],
        b"\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello!\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-Trailer\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\x00",
    ] {
        let reply = echo.exchange_closed(&chunked(body));
        let body = String::from_utf8_lossy(body);
        assert!(reply.starts_with("HTTP/1.1 400"), "{:?}: {}", body, reply);
        assert!(
            reply.contains("Connection: close\r\n"),
            "{:?}: {}",
            body,
            reply
        );
    }
    assert_eq!(
        echo.handled.load(Ordering::SeqCst),
        0,
        "no request was handed out"
    );
    echo.assert_serving();
}

#[test]
fn a_chunked_body_over_64_kib_is_413_and_never_reaches_the_handler() {
    let echo = Echo::with_defaults();
    // Declared in one chunk: refused before the data is sent.
    let reply = echo.exchange_closed(&chunked(b"10001\r\n"));
    assert!(reply.starts_with("HTTP/1.1 413"), "{}", reply);
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);
    let reply = echo.exchange_closed(&chunked(b"ffffffffffffffffffffffffffffffff\r\n"));
    assert!(reply.starts_with("HTTP/1.1 413"), "{}", reply);
    // Many small chunks: the framing bytes count too.
    let mut many = Vec::new();
    for _ in 0..(64 * 1024 / 4) {
        many.extend_from_slice(b"1\r\nx\r\n");
    }
    let reply = echo.exchange_closed(&chunked(&many));
    assert!(reply.starts_with("HTTP/1.1 413"), "{}", reply);
    assert_eq!(
        echo.handled.load(Ordering::SeqCst),
        0,
        "no request was handed out"
    );
    echo.assert_serving();
}

#[test]
fn a_chunked_body_must_arrive_within_the_header_timeout() {
    let echo = Echo::start(short_limits(), 1);
    let mut slow = echo.connect();
    slow.write_all(&chunked(b"5\r\nhel")).unwrap();
    // The only worker is free meanwhile: the body is awaited by the connection's thread.
    echo.assert_serving();
    let reply = read_to_close(&mut slow);
    assert!(reply.starts_with("HTTP/1.1 408"), "{}", reply);
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);
    assert_eq!(
        echo.handled.load(Ordering::SeqCst),
        1,
        "only /alive was handed out"
    );
}

#[test]
fn a_well_formed_chunked_body_reaches_the_handler_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener_with_limits(listener, None, short_limits()).unwrap();
    let body = b"5\r\nhello\r\n6;name=\"v\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&chunked(body)).unwrap();
    let mut request = server.recv().unwrap();
    let mut got = String::new();
    request.as_reader().read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello world");
    request.respond(Response::empty(204)).unwrap();

    // With Expect: 100-continue, the client sends the body only once told to.
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let interim = read_response(&mut client);
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{}",
        interim
    );
    client.write_all(body).unwrap();
    let mut request = server.recv().unwrap();
    let mut got = String::new();
    request.as_reader().read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello world");
    request.respond(Response::empty(204)).unwrap();
    assert!(read_response(&mut client).starts_with("HTTP/1.1 204"));
}

/// A server whose `workers` threads give each request to `handler`.
fn serve(
    limits: Limits,
    workers: usize,
    handler: impl Fn(tiny_http::Request) + Send + Sync + 'static,
) -> (Arc<Server>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());
    let handler = Arc::new(handler);
    for _ in 0..workers {
        let (server, handler) = (Arc::clone(&server), Arc::clone(&handler));
        thread::spawn(move || {
            while let Ok(request) = server.recv() {
                handler(request);
            }
        });
    }
    (server, addr)
}

/// A request on a connection of its own is answered within `bound`.
fn assert_answered_within(addr: SocketAddr, bound: Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /alive HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
    assert!(
        started.elapsed() < bound,
        "answered in {:?}, over {:?}",
        started.elapsed(),
        bound
    );
}

/// Waits up to `timeout` for the server to count `open` connections.
fn wait_for_connections(server: &Server, open: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while server.num_connections() != open {
        assert!(
            Instant::now() < deadline,
            "{} connections counted, not {} after {:?}",
            server.num_connections(),
            open,
            timeout
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The server counts `open` connections throughout `period`.
fn assert_connections_for(server: &Server, open: usize, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert_eq!(server.num_connections(), open, "connections counted");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Under the 64 KiB an answer may have to be sent without blocking.
const BIG: usize = 60 * 1024;

#[test]
fn a_client_that_never_reads_blocks_no_thread_that_answers() {
    let started = Instant::now();
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let big_answers = Arc::new(AtomicUsize::new(0));
    let (timed, counted) = (Arc::clone(&slowest), Arc::clone(&big_answers));
    // One worker: were it held by the slow client, nobody else would be answered.
    let (server, addr) = serve(short_limits(), 1, move |request| {
        let big = request.url() == "/big";
        let body = match big {
            true => vec![b'x'; BIG],
            false => b"alive".to_vec(),
        };
        let started = Instant::now();
        let _ = request.respond(Response::from_data(body));
        let took = started.elapsed();
        let mut slowest = timed.lock().unwrap();
        *slowest = (*slowest).max(took);
        if big {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });

    // Pipelined requests for far more than the socket buffers hold, never read.
    let mut never_reads = TcpStream::connect(addr).unwrap();
    let requests = 400;
    never_reads
        .write_all(&b"GET /big HTTP/1.1\r\n\r\n".repeat(requests))
        .unwrap();

    // Its buffers fill, its pending answer waits out the write timeout (2 s),
    // then the connection is closed; meanwhile everyone else is answered at once.
    while big_answers.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "served at all");
        thread::sleep(Duration::from_millis(10));
    }
    loop {
        assert_answered_within(addr, Duration::from_millis(1500));
        if server.num_connections() == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the connection that never reads is closed after the write timeout"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started.elapsed() >= short_limits().write_timeout,
        "not before the write timeout: {:?}",
        started.elapsed()
    );
    let slowest = *slowest.lock().unwrap();
    assert!(
        slowest < Duration::from_secs(1),
        "every respond returned at once; the slowest took {:?}",
        slowest
    );
    let served = big_answers.load(Ordering::SeqCst);
    assert!(
        0 < served && served < requests,
        "the connection was closed before all its requests were served: {} of {}",
        served,
        requests
    );
    // Its client finds the connection closed, not merely silent.
    never_reads
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answers = Vec::new();
    let end = never_reads.read_to_end(&mut answers);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "closed: {:?} after {} bytes",
        end,
        answers.len()
    );
}

#[test]
fn a_connection_counts_until_its_last_answer_is_written() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        write_timeout: Duration::from_secs(10),
        ..short_limits()
    };
    let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());

    // The last request of its connection, whose answer (16 MiB of unknown
    // length, written blocking) waits for a client that has not read yet.
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /huge HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let request = server.recv().unwrap();
    let answering = thread::spawn(move || {
        let body = std::io::repeat(b'x').take(16 << 20);
        request.respond(Response::new(
            tiny_http::StatusCode(200),
            vec![],
            body,
            None,
            None,
        ))
    });
    assert_connections_for(&server, 1, Duration::from_millis(500));
    let answer = read_to_close(&mut client);
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..40]);
    assert!(answer.ends_with("\r\n0\r\n\r\n"), "the answer came whole");
    answering.join().unwrap().unwrap();
    wait_for_connections(&server, 0, Duration::from_secs(5));

    // A client that leaves before its answer: counted until it is answered.
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"GET /gone HTTP/1.1\r\n\r\n").unwrap();
    let request = server.recv().unwrap();
    drop(client);
    assert_connections_for(&server, 1, Duration::from_millis(500));
    let _ = request.respond(Response::from_string("too late"));
    wait_for_connections(&server, 0, Duration::from_secs(5));
}

#[test]
fn close_connection_ends_a_kept_alive_connection_after_its_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener_with_limits(listener, None, short_limits()).unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The second request is read ahead while the first is answered.
    client
        .write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut first = server.recv().unwrap();
    first.close_connection();
    first.respond(Response::from_string("one")).unwrap();

    let reply = read_to_close(&mut client);
    assert!(reply.starts_with("HTTP/1.1 200"), "{}", reply);
    assert!(reply.contains("Connection: close\r\n"), "{}", reply);
    assert!(
        reply.ends_with("\r\n\r\none"),
        "one answer, then the end: {}",
        reply
    );
    let second = server.recv_timeout(Duration::from_millis(500)).unwrap();
    assert!(
        second.is_none(),
        "the request read ahead was not handed out: {:?}",
        second
    );
    wait_for_connections(&server, 0, Duration::from_secs(5));
}

#[test]
fn head_and_dropped_requests_are_answered_in_order_on_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener_with_limits(listener, None, short_limits()).unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"HEAD /h HTTP/1.1\r\n\r\nGET /dropped HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let request = server.recv().unwrap();
        match request.url() {
            "/dropped" => drop(request),
            _ => request.respond(Response::from_string("body")).unwrap(),
        }
    }
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "{}", head);
    assert!(head.contains("Content-Length: 4\r\n"), "{}", head);
    // No body after HEAD: the next bytes are the next answer.
    assert!(read_response(&mut client).starts_with("HTTP/1.1 500"));
    let last = read_response(&mut client);
    assert!(last.starts_with("HTTP/1.1 200"), "{}", last);
    assert!(last.ends_with("\r\n\r\nbody"), "{}", last);
}

/// Reads one response head, whatever it says of a body.
fn read_head(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0];
    while !out.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        out.push(byte[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
