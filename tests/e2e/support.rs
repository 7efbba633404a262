//! A local stack per test (scripts/local-stack.sh), purged on drop even when
//! the test fails, plus helpers that read the stack's state.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use crate::http_client::{Client, LoadReport};

/// Stacks share these addresses, so only one exists at a time.
static ONE_STACK_AT_A_TIME: Mutex<()> = Mutex::new(());

const HTTP_PORT: u16 = 18080;
const MYSQL_PORT: u16 = 13307;
const DNS_PORT: u16 = 15353;
const APP_PORT: u16 = 8000;
const METRICS_PORT: u16 = 9100;
/// Apart from a developer's own stack on 127.0.0.x.
const APP_NET: &str = "127.0.1";

/// The counter (sum of the slots) and the number of access_log rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub counter: u64,
    pub rows: u64,
}

pub struct Stack {
    name: String,
    dir: PathBuf,
    env: HashMap<String, String>,
    _turn: MutexGuard<'static, ()>,
}

impl Stack {
    /// Starts a fresh stack with `instances` app instances, or panics with the script's output.
    pub fn up(test: &str, instances: usize) -> Stack {
        Stack::up_with(test, instances, &[])
    }

    /// The same, with `app_env` in the app instances' environment.
    pub fn up_with(test: &str, instances: usize, app_env: &[(&str, &str)]) -> Stack {
        let turn = ONE_STACK_AT_A_TIME
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut stack = Stack {
            name: format!("e2e-{test}"),
            dir: PathBuf::new(),
            env: HashMap::new(),
            _turn: turn,
        };
        // In the root filesystem, or elsewhere when the servers come from images.
        let dir = String::from_utf8(stack.local_stack(&["dir"])).expect("stack path is UTF-8");
        stack.dir = PathBuf::from(dir.trim());
        // Whatever an earlier, killed run left behind goes first.
        stack.local_stack(&["purge"]);
        stack.local_stack_with(&["up", &instances.to_string()], app_env);
        stack.env = read_env_file(&stack.dir.join("stack.env"));
        stack
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], HTTP_PORT))
    }

    /// Instance `i` (from 1) listens on APP_NET.(i+1) and answers with that address.
    pub fn instance_ip(&self, i: usize) -> String {
        format!("{APP_NET}.{}", i + 1)
    }

    pub fn instance_ips(&self, n: usize) -> HashSet<String> {
        (1..=n).map(|i| self.instance_ip(i)).collect()
    }

    pub fn instance_of(&self, ip: &str) -> usize {
        let last: usize = ip
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .expect("an instance IP");
        last - 1
    }

    /// `up N` again: starts whatever is not running (a killed instance, a stopped MySQL).
    pub fn ensure_up(&mut self, instances: usize) {
        self.local_stack(&["up", &instances.to_string()]);
    }

    pub fn scale(&mut self, instances: usize) {
        self.local_stack(&["scale", &instances.to_string()]);
    }

    pub fn kill_instance(&mut self, i: usize, signal: &str) {
        let pid = self.signal(&format!("app-{i}"), signal);
        if signal == "KILL" {
            wait_for(
                Duration::from_secs(10),
                &format!("app-{i} (pid {pid}) to die"),
                || !process_alive(pid),
            );
        }
    }

    /// Sends `signal` to a server of the stack (`mysqld`, `nginx`, `app-2`); returns its pid.
    pub fn signal(&mut self, server: &str, signal: &str) -> u32 {
        let pid = self.pid(server);
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid} ({server})");
        pid
    }

    pub fn wait_instance_exit(&self, i: usize, timeout: Duration) {
        let pid = self.pid(&format!("app-{i}"));
        wait_for(timeout, &format!("app-{i} (pid {pid}) to exit"), || {
            !process_alive(pid)
        });
    }

    pub fn stop_mysql(&mut self) {
        let pid = self.signal("mysqld", "TERM");
        wait_for(Duration::from_secs(60), "mysqld to stop", || {
            !process_alive(pid)
        });
    }

    /// nginx's master and worker pids; a reload or restart changes them.
    pub fn nginx_pids(&self) -> Vec<u32> {
        let master = self.pid("nginx");
        let mut pids = vec![master];
        pids.extend(children_of(master));
        pids.sort_unstable();
        pids
    }

    /// Instance `i`'s own address, for requests that bypass nginx.
    pub fn instance_addr(&self, i: usize) -> SocketAddr {
        format!("{}:{APP_PORT}", self.instance_ip(i))
            .parse()
            .expect("an instance address")
    }

    /// Where instance `i` serves `GET /metrics`.
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        format!("{}:{METRICS_PORT}", self.instance_ip(i))
            .parse()
            .expect("a metrics address")
    }

    /// The directory of the instances' own rotated log files (LOG_DIR).
    pub fn app_log_dir(&self) -> PathBuf {
        PathBuf::from(&self.env["LOG_DIR"])
    }

    pub fn instance_pid(&self, i: usize) -> u32 {
        self.pid(&format!("app-{i}"))
    }

    /// nginx's access log so far: one line per request, with the replicas tried.
    pub fn nginx_access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/nginx-access.log")).unwrap_or_default()
    }

    /// A second nginx with this stack's configuration, listening on `port`:
    /// another replica of the entry point, sharing nothing with the first.
    /// Root filesystem stacks only; stopped when dropped.
    pub fn second_nginx(&self, port: u16) -> SecondNginx {
        let root = self
            .dir
            .ancestors()
            .nth(4)
            .expect("the stack lives in ROOTFS/var/lib/webcluster/NAME")
            .to_path_buf();
        let conf = std::fs::read_to_string(self.dir.join("nginx.conf")).expect("nginx.conf");
        let listen = format!("listen 127.0.0.1:{HTTP_PORT};");
        assert!(
            conf.contains(&listen),
            "the stack's nginx listens on {HTTP_PORT}"
        );
        let inside = PathBuf::from("/tmp").join(format!("{}-nginx-2", self.name));
        let conf = conf
            .replace(&listen, &format!("listen 127.0.0.1:{port};"))
            .lines()
            .map(|line| match line.trim_start().starts_with("access_log /") {
                true => "    access_log off;",
                false => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let host_conf = root
            .join(inside.strip_prefix("/").expect("absolute"))
            .with_extension("conf");
        std::fs::write(&host_conf, conf).expect("write the second nginx.conf");
        let nginx = SecondNginx {
            root,
            conf: inside.with_extension("conf"),
            pid: inside.with_extension("pid"),
        };
        assert!(nginx.run(&[]), "the second nginx started");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(Duration::from_secs(10), "the second nginx", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        nginx
    }

    /// What instance `i` wrote to stdout and stderr.
    pub fn instance_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("log/app-{i}.log"))).unwrap_or_default()
    }

    pub fn counter_and_rows(&self) -> Totals {
        let mut root = self.db_conn("root", "");
        let (counter, rows): (u64, u64) = root
            .query_first("SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log)")
            .expect("read the totals as root")
            .expect("one row");
        Totals { counter, rows }
    }

    /// A root connection, for what a test does to the database behind the app's back.
    pub fn root_db_conn(&self) -> Conn {
        self.db_conn("root", "")
    }

    /// A connection with the app's own least-privilege account.
    pub fn app_db_conn(&self) -> Conn {
        let password =
            std::fs::read_to_string(&self.env["APP_DB_PASSWORD_FILE"]).expect("app password file");
        self.db_conn(&self.env["APP_USER"], password.trim_end())
    }

    fn db_conn(&self, user: &str, password: &str) -> Conn {
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(MYSQL_PORT)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some(
                self.env.get("DB_NAME").map_or("webcluster", String::as_str),
            ));
        Conn::new(opts).unwrap_or_else(|e| panic!("connect to MySQL as {user}: {e}"))
    }

    /// A stack whose database is a 3-member group (DB_MEMBERS=3).
    pub fn up_group(test: &str, instances: usize, app_env: &[(&str, &str)]) -> Stack {
        let mut env = vec![("DB_MEMBERS", "3")];
        env.extend_from_slice(app_env);
        Stack::up_with(test, instances, &env)
    }

    /// Member `i` (from 1) of a group: its mysqld's pid.
    pub fn member_pid(&self, i: usize) -> u32 {
        self.pid(&format!("../mysqld-{i}/run/mysqld"))
    }

    /// Sends `signal` to member `i`'s mysqld; returns its pid.
    pub fn signal_member(&self, i: usize, signal: &str) -> u32 {
        let pid = self.member_pid(i);
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid} (mysqld-{i})");
        pid
    }

    /// A root connection to member `i`, if it answers within a second.
    pub fn member_conn(&self, i: usize) -> Option<Conn> {
        let port = MYSQL_PORT + u16::try_from(i - 1).expect("a member number");
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("root"))
            .tcp_connect_timeout(Some(Duration::from_secs(1)))
            .read_timeout(Some(Duration::from_secs(5)))
            .db_name(Some("webcluster"));
        Conn::new(opts).ok()
    }

    /// Member `i`'s own state and role in the group, as it sees them.
    pub fn member_role(&self, i: usize) -> Option<(String, String)> {
        self.member_conn(i)?
            .query_first(
                "SELECT MEMBER_STATE, MEMBER_ROLE FROM performance_schema.replication_group_members \
                  WHERE MEMBER_ID = @@server_uuid",
            )
            .ok()?
    }

    /// The member that is the group's ONLINE primary, if one is.
    pub fn primary(&self, members: usize) -> Option<usize> {
        (1..=members).find(|&i| {
            self.member_role(i)
                .is_some_and(|(state, role)| state == "ONLINE" && role == "PRIMARY")
        })
    }

    /// The counter and rows as member `i` holds them.
    pub fn member_totals(&self, i: usize) -> Option<Totals> {
        let (counter, rows): (u64, u64) = self
            .member_conn(i)?
            .query_first("SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log)")
            .ok()??;
        Some(Totals { counter, rows })
    }

    /// Waits until every member is ONLINE and all hold the same counter and
    /// rows, with counter == rows; returns those totals.
    pub fn wait_members_agree(&self, members: usize, timeout: Duration) -> Totals {
        let mut agreed = None;
        wait_for(
            timeout,
            "every member ONLINE, holding the same counter and rows",
            || {
                let online = (1..=members).all(|i| {
                    self.member_role(i)
                        .is_some_and(|(state, _)| state == "ONLINE")
                });
                let totals: Vec<Option<Totals>> =
                    (1..=members).map(|i| self.member_totals(i)).collect();
                agreed = totals[0].filter(|t| {
                    online && t.counter == t.rows && totals.iter().all(|other| *other == Some(*t))
                });
                agreed.is_some()
            },
        );
        agreed.expect("members agree")
    }

    /// How many of `ids` have a row on member `i`, and the most rows any has.
    pub fn rows_for_ids(&self, i: usize, ids: &[String]) -> (usize, u64) {
        let mut conn = self.member_conn(i).expect("the member answers");
        let (mut found, mut most) = (0, 0);
        for chunk in ids.chunks(500) {
            let list = chunk
                .iter()
                .map(|id| {
                    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "an id: {id:?}");
                    format!("'{id}'")
                })
                .collect::<Vec<_>>()
                .join(",");
            let counts: Vec<u64> = conn
                .query(format!(
                    "SELECT COUNT(*) FROM access_log WHERE request_id IN ({list}) GROUP BY request_id"
                ))
                .expect("count rows by request id");
            found += counts.len();
            most = most.max(counts.into_iter().max().unwrap_or(0));
        }
        (found, most)
    }

    fn pid(&self, server: &str) -> u32 {
        let path = self.dir.join(format!("run/{server}.pid"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} holds {text:?}", path.display()))
    }

    fn local_stack(&self, args: &[&str]) -> Vec<u8> {
        self.local_stack_with(args, &[])
    }

    fn local_stack_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Vec<u8> {
        let ports = [
            ("HTTP_PORT", HTTP_PORT.to_string()),
            ("MYSQL_PORT", MYSQL_PORT.to_string()),
            ("DNS_PORT", DNS_PORT.to_string()),
            ("APP_PORT", APP_PORT.to_string()),
        ];
        let mut env: Vec<(&str, String)> = ports.into();
        env.push(("STACK_NAME", self.name.clone()));
        env.push(("APP_NET", APP_NET.to_owned()));
        env.push(("METRICS_PORT", METRICS_PORT.to_string()));
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        script_output(&repo().join("scripts/local-stack.sh"), args, &env)
    }

    /// The ends of the servers' logs, for a failing test's output.
    fn print_logs(&self) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.join("log"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- {} (last {} lines)", path.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("    {line}");
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if thread::panicking() {
            self.print_logs();
        }
        // E2E_KEEP_LOGS=1 stops the stack but keeps its logs and data for a look.
        let command = if std::env::var_os("E2E_KEEP_LOGS").is_some() {
            "down"
        } else {
            "purge"
        };
        let status = Command::new("bash")
            .arg(repo().join("scripts/local-stack.sh"))
            .arg(command)
            .env("STACK_NAME", &self.name)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "warning: could not {command} stack {}: {status:?}",
                self.name
            );
        }
    }
}

/// Every one of `requests` was answered 200, and each 200 added exactly one
/// to the counter and one access_log row.
pub fn assert_each_request_counted_once(
    report: &LoadReport,
    requests: u64,
    before: Totals,
    after: Totals,
) {
    let first_errors = &report.errors[..report.errors.len().min(5)];
    assert!(
        report.errors.is_empty(),
        "{} failed requests, first: {first_errors:?}",
        report.errors.len()
    );
    assert_eq!(
        report.ok(),
        requests,
        "every request answered 200: {:?}",
        report.statuses
    );
    assert_eq!(
        after.counter - before.counter,
        report.ok(),
        "counter == 200 responses"
    );
    assert_eq!(
        after.rows - before.rows,
        report.ok(),
        "new access_log rows == 200 responses"
    );
}

/// The value of the series named exactly `series` (with its labels) in an
/// exposition, 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().expect("a number"))
        .sum()
}

/// No client error, and every one of `requests` answered 200 or 503; returns the 503s.
pub fn assert_only_200_and_503(report: &LoadReport, requests: u64) -> u64 {
    assert!(
        report.errors.is_empty(),
        "client errors: {:?}",
        &report.errors[..report.errors.len().min(5)]
    );
    let unavailable = report.statuses.get(&503).copied().unwrap_or(0);
    assert_eq!(
        report.ok() + unavailable,
        requests,
        "only 200 and 503: {:?}",
        report.statuses
    );
    unavailable
}

/// counter == rows; every 200 has its row, and a 503 whose CALL was already
/// sent (outcome unknown) may have one too, so new rows lie between the 200s
/// and the 200s plus the 503s.
pub fn assert_every_200_counted_and_at_most_the_503s_more(
    report: &LoadReport,
    before: Totals,
    after: Totals,
) {
    let unavailable = report.statuses.get(&503).copied().unwrap_or(0);
    assert_eq!(after.counter, after.rows, "counter == rows");
    let new_rows = after.rows - before.rows;
    assert!(
        report.ok() <= new_rows && new_rows <= report.ok() + unavailable,
        "200s {} <= new rows {new_rows} <= 200s + 503s {}",
        report.ok(),
        report.ok() + unavailable
    );
}

/// Polls `condition` every 100 ms; panics with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `GET path` on a fresh connection to `addr` answers 200.
pub fn wait_for_200(addr: SocketAddr, path: &str, timeout: Duration, what: &str) {
    wait_for(timeout, what, || {
        Client::new(addr).get(path).is_ok_and(|r| r.status == 200)
    });
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a script with bash; panics with its output if it fails.
fn script_output(script: &Path, args: &[&str], env: &[(&str, String)]) -> Vec<u8> {
    let output = Command::new("bash")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The fields of /proc/PID/stat after the command name: state, ppid, ...
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie has exited; its parent just has not reaped it yet.
    proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent = parent.to_string();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|fields| fields.get(1) == Some(&parent)))
        .collect()
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmRSS")
}

/// How many of a process's threads are request workers (named `worker-N`).
pub fn worker_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("worker-"))
        .count()
}

/// An nginx process started by a test, in the stack's root filesystem.
pub struct SecondNginx {
    root: PathBuf,
    conf: PathBuf,
    pid: PathBuf,
}

impl SecondNginx {
    /// Runs nginx with this configuration; true when it exited 0.
    fn run(&self, extra: &[&str]) -> bool {
        let globals = format!("pid {}; error_log stderr;", self.pid.display());
        Command::new("chroot")
            .arg(&self.root)
            .arg("nginx")
            .arg("-c")
            .arg(&self.conf)
            .args(["-g", &globals])
            .args(extra)
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for SecondNginx {
    fn drop(&mut self) {
        if !self.run(&["-s", "quit"]) {
            eprintln!(
                "warning: could not stop the second nginx ({})",
                self.conf.display()
            );
        }
    }
}
