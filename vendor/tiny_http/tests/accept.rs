//! A test binary of its own: it lowers this process's open-file limit, which
//! would disturb tests running beside it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Response, Server};

/// Open descriptors; none left to even list them counts as all.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(usize::MAX, |dir| dir.count())
}

/// The soft limit on open files, from /proc/self/limits.
fn open_file_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn set_open_file_limit(soft: usize) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={}:", soft))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --nofile={}", soft);
}

#[test]
fn running_out_of_descriptors_pauses_accepting_and_never_ends_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::from_listener(listener, None).unwrap());
    let worker = Arc::clone(&server);
    thread::spawn(move || {
        while let Ok(request) = worker.recv() {
            let _ = request.respond(Response::from_string("ok"));
        }
    });

    // Room for a few connections only: each costs the client one descriptor
    // and the server two, so the server runs out first, in accept() or in
    // splitting the socket into its halves.
    let original = open_file_limit();
    let limit = open_descriptors() + 16;
    set_open_file_limit(limit);
    let clients: Vec<TcpStream> = (0..12)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_descriptors() < limit - 1 {
        assert!(
            Instant::now() < deadline,
            "the server used every descriptor"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Let the accept thread meet the limit a few times.
    thread::sleep(Duration::from_millis(300));
    drop(clients);
    set_open_file_limit(original);

    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "still serving: {:?}",
        reply
    );
}
