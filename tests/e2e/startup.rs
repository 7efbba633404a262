//! The binary on its own, without the stack: startup errors, a missing
//! database, and the exit status after SIGTERM.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::http_client::Client;
use crate::support::{metric_value, wait_for, wait_for_200};

/// Apart from the stacks' addresses; nothing else listens here.
const LISTEN: &str = "127.0.2.1:8000";

fn webcluster(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webcluster"));
    command
        .env_clear()
        .env(
            "LOG_DIR",
            std::env::temp_dir().join("webcluster-startup-test"),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits until the app at `addr` answers its own /healthz.
fn wait_listening(addr: std::net::SocketAddr) {
    wait_for_200(
        addr,
        "/healthz",
        Duration::from_secs(10),
        "the app to listen",
    );
}

/// Kills the child if the test fails before it exits by itself.
struct Running(Option<Child>);

impl Running {
    fn wait(mut self) -> Output {
        self.0
            .take()
            .expect("still running")
            .wait_with_output()
            .expect("wait")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn an_invalid_setting_stops_startup_with_one_line_and_status_2() {
    for (variable, value) in [
        ("WORKERS", "0"),
        ("DB_PORT", "http"),
        ("TRUSTED_PROXIES", "10.0.0.0/40"),
    ] {
        let output = webcluster(&[(variable, value)])
            .output()
            .expect("run webcluster");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(variable),
            "the line names {variable}: {stderr}"
        );
    }
}

#[test]
fn without_a_database_it_starts_answers_503_and_exits_0_on_sigterm() {
    let child = webcluster(&[
        ("LISTEN_ADDR", LISTEN),
        ("INTERNAL_IP", "127.0.2.1"),
        // Nothing listens on port 1: connections are refused at once.
        ("DB_PORT", "1"),
        ("WORKERS", "4"),
    ])
    .spawn()
    .expect("start webcluster");
    let running = Running(Some(child));
    let addr = LISTEN.parse().expect("address");

    wait_listening(addr);
    let mut client = Client::new(addr);
    assert_eq!(client.get("/").expect("GET /").status, 503);
    assert_eq!(client.get("/readyz").expect("GET /readyz").status, 503);
    assert_eq!(
        client.request("HEAD", "/").expect("HEAD /").status,
        200,
        "HEAD needs no database"
    );

    let pid = running.0.as_ref().expect("child").id().to_string();
    assert!(
        Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let output = running.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "exit status after SIGTERM:\n{stderr}"
    );
    assert!(stderr.contains("stopped: Drained"), "{stderr}");
    assert!(
        stderr.contains("internal IP 127.0.2.1 (from INTERNAL_IP)"),
        "{stderr}"
    );
}

#[test]
fn the_readme_s_configuration_table_lists_exactly_what_the_app_reads() {
    // Nothing set: every value printed is the app's default.
    let output = Command::new(env!("CARGO_BIN_EXE_webcluster"))
        .env_clear()
        .arg("config")
        .output()
        .expect("webcluster config");
    assert!(output.status.success(), "{output:?}");
    let reads: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section");
    // Rows of the first table: | `NAME` | `default` or text | meaning |
    let documented: std::collections::BTreeMap<String, String> = table
        .lines()
        .skip_while(|line| !line.starts_with("| variable"))
        .skip(2)
        .take_while(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            Some((
                cells.get(1)?.trim_matches('`').to_owned(),
                cells.get(2)?.to_string(),
            ))
        })
        .collect();
    let names =
        |m: &std::collections::BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&documented),
        names(&reads),
        "README table vs webcluster config"
    );
    for (name, value) in &reads {
        let default = &documented[name];
        // A default written as a code value must be the one the app takes.
        if let Some(code) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) {
            assert_eq!(code, value, "{name}'s default in the README");
        }
    }
}

/// A tmpfs of the test's own, unmounted when dropped, pass or fail.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(name: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let tmpfs = Tmpfs(dir);
        tmpfs.run(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"]);
        tmpfs
    }

    /// Takes every free byte (a read-only remount is refused while the app
    /// holds its file open for writing; a full disk fails its writes alike).
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.0.join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    }

    fn empty(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("remove filler");
    }

    fn run(&self, args: &[&str]) {
        let status = Command::new("mount")
            .args(args)
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "mount {args:?} {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The log directory's disk fills up under the instance: every line still
/// reaches stderr, once each;
/// the failures are counted in /metrics; once the directory is writable again
/// the file takes lines again, rotated within its bounds.
#[test]
fn a_log_directory_that_becomes_unwritable_never_silences_stderr() {
    let logs = Tmpfs::mount("webcluster-unwritable-logs");
    let stderr_path =
        std::env::temp_dir().join(format!("webcluster-stderr-{}", std::process::id()));
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let child = webcluster(&[
        ("LISTEN_ADDR", LISTEN),
        ("INTERNAL_IP", "127.0.2.1"),
        ("METRICS_ADDR", "127.0.2.1:9100"),
        ("DB_PORT", "1"),
        ("LOG_MAX_BYTES", "4096"),
        ("LOG_FILES", "2"),
    ])
    .env("LOG_DIR", &logs.0)
    .stderr(stderr)
    .spawn()
    .expect("start webcluster");
    let running = Running(Some(child));
    let addr = LISTEN.parse().expect("address");
    wait_listening(addr);
    let mut client = Client::new(addr);
    let mut head = |path: String| {
        let answer = client.request("HEAD", &path).expect("HEAD /");
        assert_eq!(answer.status, 200);
        path
    };
    let mut sent: Vec<String> = (0..20).map(|i| head(format!("/?before-{i}"))).collect();
    logs.fill();
    sent.extend((0..80).map(|i| head(format!("/?during-{i}"))));
    let metrics = Client::new("127.0.2.1:9100".parse().expect("address"))
        .get("/metrics")
        .expect("scrape");
    let failures = metric_value(
        &metrics.body,
        "webcluster_log_write_errors_total{sink=\"file\"}",
    ) + metric_value(
        &metrics.body,
        "webcluster_log_write_errors_total{sink=\"rotation\"}",
    );
    assert!(failures > 0.0, "counted: {}", metrics.body);
    logs.empty();
    let file = logs.0.join("webcluster-127.0.2.1.log");
    let mut n = 0;
    wait_for(
        Duration::from_secs(15),
        "the file to take lines again",
        || {
            n += 1;
            let path = head(format!("/?after-{n}"));
            sent.push(path.clone());
            std::fs::read_to_string(&file).is_ok_and(|text| text.contains(&format!("HEAD {path} ")))
        },
    );

    let pid = running.0.as_ref().expect("child").id().to_string();
    Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .expect("kill");
    running.wait();
    let stderr = std::fs::read_to_string(&stderr_path).expect("stderr");
    let _ = std::fs::remove_file(&stderr_path);
    for path in &sent {
        let times = stderr.matches(&format!(" HEAD {path} 200 ")).count();
        assert_eq!(times, 1, "{path} on stderr once, not {times} times");
    }
    let names: Vec<String> = std::fs::read_dir(&logs.0)
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() <= 3 && !names.iter().any(|n| n.ends_with(".next") || n == "filler"),
        "the file and at most LOG_FILES rotations: {names:?}"
    );
}
