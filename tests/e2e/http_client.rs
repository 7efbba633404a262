//! A small HTTP/1.1 client over real sockets: keep-alive, a cookie jar, and
//! a load runner that counts every outcome.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Long enough for any configured database timeout; a hang fails the test instead of stalling it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `name=value` pairs this response asks the client to store.
    pub fn set_cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers_named("Set-Cookie")
            .filter_map(|set| set.split(';').next()?.trim().split_once('='))
    }

    /// The app's own `internal_ip` cookie, as `internal_ip=<address>`, if set.
    pub fn sticky_cookie(&self) -> Option<String> {
        self.set_cookies()
            .find(|(name, _)| *name == "internal_ip")
            .map(|(name, value)| format!("{name}={value}"))
    }
}

/// One client: a kept-alive connection and, if it keeps cookies, a cookie jar.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    keeps_cookies: bool,
    /// Cookies by name: nginx's route cookie and the app's internal_ip.
    pub jar: BTreeMap<String, String>,
    /// Sent as the whole Cookie header by a client that keeps none.
    fixed_cookie: Option<String>,
}

impl Client {
    /// A browser-like client that stores the cookies it is given.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            keeps_cookies: true,
            jar: BTreeMap::new(),
            fixed_cookie: None,
        }
    }

    /// A client that always sends `cookie` (or none) and ignores Set-Cookie.
    pub fn with_fixed_cookie(addr: SocketAddr, cookie: Option<&str>) -> Client {
        Client {
            addr,
            conn: None,
            keeps_cookies: false,
            jar: BTreeMap::new(),
            fixed_cookie: cookie.map(str::to_owned),
        }
    }

    /// The Cookie header this client sends.
    pub fn cookie_header(&self) -> Option<String> {
        if !self.keeps_cookies {
            return self.fixed_cookie.clone();
        }
        let pairs: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The same client, talking to another address (another nginx) from now on.
    pub fn switch_to(&mut self, addr: SocketAddr) {
        self.addr = addr;
        self.conn = None;
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path)
    }

    pub fn request(&mut self, method: &str, path: &str) -> io::Result<Response> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                stream.set_nodelay(true)?;
                BufReader::new(stream)
            }
        };
        let (response, conn) = exchange(conn, method, path, self.cookie_header().as_deref())?;
        if response
            .header("Connection")
            .is_none_or(|v| !v.eq_ignore_ascii_case("close"))
        {
            self.conn = Some(conn);
        }
        if self.keeps_cookies {
            for (name, value) in response.set_cookies() {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }
}

fn exchange(
    mut conn: BufReader<TcpStream>,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> io::Result<(Response, BufReader<TcpStream>)> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: e2e\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    head.push_str("\r\n");
    conn.get_mut().write_all(head.as_bytes())?;

    let status_line = read_line(&mut conn)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut conn)?;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut response = Response {
        status,
        body: String::new(),
        headers,
    };
    if method != "HEAD" {
        let length: usize = response
            .header("Content-Length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("response without Content-Length"))?;
        let mut body = vec![0; length];
        conn.read_exact(&mut body)?;
        response.body = String::from_utf8_lossy(&body).into_owned();
    }
    Ok((response, conn))
}

fn read_line(conn: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end().to_owned())
}

/// What a load run saw: every request ends as a status or an error.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub statuses: HashMap<u16, u64>,
    pub errors: Vec<String>,
    /// 200 responses per instance (the body is the instance's internal IP).
    pub per_instance: HashMap<String, u64>,
    /// 503 responses that did not say when to retry.
    pub without_retry_after: u64,
    /// The request id nginx gave each 200 (its X-Request-ID header).
    pub ids_200: Vec<String>,
}

impl LoadReport {
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }
}

/// `connections` browser-like clients sending `total` GET / between them, in the background.
pub struct Load {
    /// Finished requests, so a test can act mid-run.
    progress: Arc<AtomicU64>,
    handle: thread::JoinHandle<LoadReport>,
}

impl Load {
    pub fn start(addr: SocketAddr, connections: usize, total: u64) -> Load {
        Load::paced(addr, connections, total, Duration::ZERO)
    }

    /// The same, spread evenly over `over` instead of as fast as possible.
    pub fn paced(addr: SocketAddr, connections: usize, total: u64, over: Duration) -> Load {
        let progress = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&progress);
        let handle = thread::spawn(move || run_load(addr, connections, total, over, &counter));
        Load { progress, handle }
    }

    /// Blocks until `done` requests have finished (at most a minute).
    pub fn wait_for_progress(&self, done: u64) {
        let what = format!("{done} requests to finish");
        crate::support::wait_for(Duration::from_secs(60), &what, || {
            self.progress.load(Ordering::Relaxed) >= done
        });
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn join(self) -> LoadReport {
        self.handle.join().expect("a load thread panicked")
    }
}

fn run_load(
    addr: SocketAddr,
    connections: usize,
    total: u64,
    over: Duration,
    progress: &Arc<AtomicU64>,
) -> LoadReport {
    let handles: Vec<_> = (0..connections as u64)
        .map(|c| {
            let share = total / connections as u64 + u64::from(c < total % connections as u64);
            let pause = over / u32::try_from(share.max(1)).unwrap_or(u32::MAX);
            let progress = Arc::clone(progress);
            thread::spawn(move || {
                let mut report = LoadReport::default();
                let mut client = Client::new(addr);
                for _ in 0..share {
                    thread::sleep(pause);
                    match client.get("/") {
                        Ok(response) => {
                            *report.statuses.entry(response.status).or_default() += 1;
                            if response.status == 503 && response.header("Retry-After").is_none() {
                                report.without_retry_after += 1;
                            }
                            if response.status == 200 {
                                *report
                                    .per_instance
                                    .entry(response.body.trim().to_owned())
                                    .or_default() += 1;
                                if let Some(id) = response.header("X-Request-ID") {
                                    report.ids_200.push(id.to_owned());
                                }
                            }
                        }
                        Err(e) => {
                            report.errors.push(e.to_string());
                            client = Client::new(addr);
                        }
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                report
            })
        })
        .collect();
    let mut merged = LoadReport::default();
    for handle in handles {
        let part = handle.join().expect("a load thread panicked");
        for (status, n) in part.statuses {
            *merged.statuses.entry(status).or_default() += n;
        }
        for (ip, n) in part.per_instance {
            *merged.per_instance.entry(ip).or_default() += n;
        }
        merged.errors.extend(part.errors);
        merged.without_retry_after += part.without_retry_after;
        merged.ids_200.extend(part.ids_200);
    }
    merged
}
