//! Clients that send `GET /` over and over and never read the answers,
//! straight at an instance: their answers wait in their own sockets, never
//! in front of anyone else's (vendor/README.md, patch 13).

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use socket2::{Domain, Protocol, Socket, Type};

use crate::http_client::Client;
use crate::support::{Stack, wait_for};

const SLOW_READERS: usize = 8;
/// Over twice the instance's WRITE_TIMEOUT_MS (10 s): each slow reader's
/// buffers fill within seconds, and its answer then waits out the write
/// timeout. The slow readers go on until the instance has closed one of
/// them too, for at most `HOLD_MAX`.
const HOLD: Duration = Duration::from_secs(25);
const HOLD_MAX: Duration = Duration::from_secs(60);
/// Well under WRITE_TIMEOUT_MS: a probe that waited behind a slow reader's
/// answer would take about that long.
const PROBE_BOUND: Duration = Duration::from_secs(2);

#[test]
fn clients_that_never_read_their_answers_delay_no_one_else() {
    let stack = Stack::up("slow-readers", 1);
    let instance = stack.instance_addr(1);
    let before = stack.counter_and_rows();
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));

    let slow: Vec<_> = (0..SLOW_READERS)
        .map(|_| {
            let (stop, closed) = (Arc::clone(&stop), Arc::clone(&closed));
            thread::spawn(move || never_read(instance, &stop, &closed))
        })
        .collect();
    let probes: Vec<_> = [("through nginx", stack.http_addr()), ("direct", instance)]
        .into_iter()
        .map(|(route, addr)| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || (route, probe(addr, &stop)))
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < HOLD_MAX
        && (started.elapsed() < HOLD || closed.load(Ordering::Relaxed) == 0)
    {
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in slow {
        reader.join().expect("slow reader");
    }
    let probes: Vec<(&str, Probes)> = probes
        .into_iter()
        .map(|t| t.join().expect("probe"))
        .collect();

    for (route, report) in &probes {
        assert!(
            report.errors.is_empty(),
            "{route}: {:?}",
            &report.errors[..report.errors.len().min(5)]
        );
        assert!(
            report.sent > 0 && report.statuses.get(&200) == Some(&report.sent),
            "{route}: every probe answered 200: {:?}",
            report.statuses
        );
        assert!(
            report.slowest < PROBE_BOUND,
            "{route}: the slowest of {} probes took {:?}",
            report.sent,
            report.slowest
        );
    }
    // Only an answer not written within WRITE_TIMEOUT_MS closes a connection:
    // the slow readers' buffers really filled.
    assert!(
        closed.load(Ordering::Relaxed) > 0,
        "the instance closed none of the connections that never read in {:?}",
        started.elapsed()
    );

    // Every hit the instance answered 200 is in access_log (once: its
    // request id is unique there), and the counter says as many.
    wait_for(
        Duration::from_secs(20),
        "every acknowledged hit in access_log, counter == rows",
        || {
            let totals = stack.counter_and_rows();
            let rows: HashSet<String> = stack
                .root_db_conn()
                .query::<String, _>("SELECT request_id FROM access_log")
                .expect("read access_log")
                .into_iter()
                .collect();
            totals.counter == totals.rows
                && acknowledged_ids(&stack.instance_log(1)).is_subset(&rows)
        },
    );
    let acknowledged = acknowledged_ids(&stack.instance_log(1)).len() as u64;
    let probed: u64 = probes.iter().map(|(_, r)| r.sent).sum();
    let after = stack.counter_and_rows();
    assert!(
        acknowledged >= probed && after.rows - before.rows >= acknowledged,
        "{probed} probes <= {acknowledged} hits answered 200 <= {} new rows",
        after.rows - before.rows
    );
}

/// Request ids of the `GET /` the instance answered 200, from its log lines
/// (`... GET / 200 1.2ms id=<id>`).
fn acknowledged_ids(log: &str) -> HashSet<String> {
    log.lines()
        .filter(|line| line.contains(" GET / 200 "))
        .filter_map(|line| line.rsplit_once(" id="))
        .map(|(_, id)| id.trim().to_owned())
        .collect()
}

/// A connection with a small receive window and small segments: a few
/// hundred unread answers fill what the kernel holds for it at both ends
/// (with the defaults on loopback, about 1.7 MB or 8,000 answers).
fn connect_small(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(4096)?;
    socket.set_tcp_mss(536)?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let stream = TcpStream::from(socket);
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    Ok(stream)
}

/// Sends `GET /` over and over and never reads, reconnecting whenever the
/// instance closes the connection (counted in `closed`), until `stop`.
fn never_read(addr: SocketAddr, stop: &AtomicBool, closed: &AtomicU64) {
    let batch = "GET / HTTP/1.1\r\nHost: slow-reader\r\n\r\n"
        .repeat(50)
        .into_bytes();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_small(addr) else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        'connection: loop {
            // Whole requests only: a write that times out is resumed where it stopped.
            let mut rest = batch.as_slice();
            while !rest.is_empty() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match stream.write(rest) {
                    Ok(0) => break 'connection,
                    Ok(n) => rest = &rest[n..],
                    // The instance stopped reading: its answers to us are waiting.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break 'connection,
                }
            }
        }
        closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Probes {
    sent: u64,
    statuses: HashMap<u16, u64>,
    errors: Vec<String>,
    slowest: Duration,
}

/// A `GET /` every 100 ms on a kept-alive connection, until `stop`.
fn probe(addr: SocketAddr, stop: &AtomicBool) -> Probes {
    let mut report = Probes::default();
    let mut client = Client::new(addr);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match client.get("/") {
            Ok(response) => *report.statuses.entry(response.status).or_default() += 1,
            Err(e) => {
                report.errors.push(e.to_string());
                client = Client::new(addr);
            }
        }
        report.sent += 1;
        report.slowest = report.slowest.max(started.elapsed());
        thread::sleep(Duration::from_millis(100));
    }
    report
}
