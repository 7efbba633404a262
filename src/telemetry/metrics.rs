//! The instance's Prometheus metrics: one registry for the process, updated
//! where things happen, encoded by `prometheus-client` when scraped.

use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the app keeps. Read with `metrics()`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RouteLabel>,
    hits_recorded: Counter,
    db_errors: Family<KindLabel, Counter>,
    db_call_seconds: Histograms<CallLabel>,
    pool_in_use: Gauge,
    pool_waiting: Gauge,
    batch_size: Histogram,
    queue_depth: Gauge,
    db_primary: Family<MemberLabel, Gauge>,
    /// The member now labelled primary, to unlabel when it changes.
    current_primary: Mutex<Option<String>>,
    db_failovers: Counter,
    hits_held: Gauge,
    longest_hold: Gauge<f64, AtomicU64>,
    open_connections: Gauge,
    log_write_errors: Family<SinkLabel, Counter>,
    resident_memory: Gauge,
    open_fds: Gauge,
    threads: Gauge,
}

/// Latencies from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("webcluster"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            hits_recorded: Counter::default(),
            db_errors: Family::default(),
            db_call_seconds: Family::new_with_constructor(latency_histogram),
            pool_in_use: Gauge::default(),
            pool_waiting: Gauge::default(),
            // 1, 2, 4 ... 1024 hits.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            queue_depth: Gauge::default(),
            db_primary: Family::default(),
            current_primary: Mutex::new(None),
            db_failovers: Counter::default(),
            hits_held: Gauge::default(),
            longest_hold: Gauge::default(),
            open_connections: Gauge::default(),
            log_write_errors: Family::default(),
            resident_memory: Gauge::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "http_requests",
            "Requests answered, by route and status",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a worker taking a request to its answer being sent",
            Unit::Seconds,
            m.request_seconds.clone(),
        );
        registry.register(
            "hits_recorded",
            "Hits inserted by record_hits (a retried request id counts once)",
            m.hits_recorded.clone(),
        );
        registry.register(
            "db_errors",
            "Database errors by kind: unavailable, outcome_unknown, refused, unexpected_reply, panicked (a batch whose recording panicked), and retried (a refused call tried again)",
            m.db_errors.clone(),
        );
        registry.register_with_unit(
            "db_call_duration",
            "Time per database call, retries included, by call",
            Unit::Seconds,
            m.db_call_seconds.clone(),
        );
        registry.register(
            "db_pool_in_use",
            "Pooled read connections checked out or being opened",
            m.pool_in_use.clone(),
        );
        registry.register(
            "db_pool_waiting",
            "Requests waiting for a pooled read connection",
            m.pool_waiting.clone(),
        );
        registry.register(
            "hit_batch_size",
            "Hits per record_hits call",
            m.batch_size.clone(),
        );
        registry.register(
            "hit_queue_depth",
            "Hits waiting for a committer",
            m.queue_depth.clone(),
        );
        registry.register(
            "db_primary",
            "1 for the database member this instance writes to, 0 for one it wrote to before",
            m.db_primary.clone(),
        );
        registry.register(
            "db_failovers",
            "Times the primary this instance writes to moved to another member",
            m.db_failovers.clone(),
        );
        registry.register(
            "hits_held",
            "Hits held while no primary answers (up to DB_FAILOVER_WAIT_MS)",
            m.hits_held.clone(),
        );
        registry.register_with_unit(
            "hit_hold_longest",
            "The longest a batch of hits has been held for a primary",
            Unit::Seconds,
            m.longest_hold.clone(),
        );
        registry.register(
            "http_open_connections",
            "Client connections open to this instance",
            m.open_connections.clone(),
        );
        registry.register(
            "log_write_errors",
            "Log lines a sink could not take (stderr or file), and failed rotations of the file",
            m.log_write_errors.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the process",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process",
            m.open_fds.clone(),
        );
        registry.register(
            "process_threads",
            "Threads of the process",
            m.threads.clone(),
        );
        m
    }

    /// One answered request, by a fixed route label (never a client's path).
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// One committed batch of `size` hits, `recorded` of them new.
    pub fn batch(&self, size: usize, recorded: u64) {
        self.batch_size.observe(size as f64);
        self.hits_recorded.inc_by(recorded);
    }

    /// One database call, its time and the kind of its final error if any.
    pub fn db_call(&self, call: &'static str, took: Duration, error_kind: Option<&'static str>) {
        self.db_call_seconds
            .get_or_create(&CallLabel { call })
            .observe(took.as_secs_f64());
        if let Some(kind) = error_kind {
            self.db_error(kind);
        }
    }

    /// A refused call that is tried again.
    pub fn db_retry(&self) {
        self.db_error("retried");
    }

    /// One database error of `kind`, outside any call's own accounting.
    pub fn db_error(&self, kind: &'static str) {
        self.db_errors.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn set_pool(&self, in_use: usize, waiting: usize) {
        self.pool_in_use.set(gauge_value(in_use));
        self.pool_waiting.set(gauge_value(waiting));
    }

    /// The primary is now `member`.
    pub fn set_db_primary(&self, member: &str) {
        let mut current = self
            .current_primary
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.replace(member.to_owned()) {
            self.db_primary
                .get_or_create(&MemberLabel { member: old })
                .set(0);
        }
        self.db_primary
            .get_or_create(&MemberLabel {
                member: member.to_owned(),
            })
            .set(1);
    }

    /// The primary moved to another member.
    pub fn db_failover(&self) {
        self.db_failovers.inc();
    }

    /// `hits` are held for a primary now (0 when none is), for `held` so far.
    pub fn hold(&self, hits: usize, held: Duration) {
        self.hits_held.set(gauge_value(hits));
        let held = held.as_secs_f64();
        if held > self.longest_hold.get() {
            self.longest_hold.set(held);
        }
    }

    /// A log line `sink` could not take, or a failed rotation.
    pub fn log_write_error(&self, sink: &'static str) {
        self.log_write_errors
            .get_or_create(&SinkLabel { sink })
            .inc();
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(gauge_value(depth));
    }

    /// The exposition text, with the gauges that are read rather than kept
    /// (open connections, the process's figures) sampled now.
    pub fn encode(&self, open_connections: usize) -> String {
        self.open_connections.set(gauge_value(open_connections));
        let process = super::process_stats::sample();
        self.resident_memory
            .set(gauge_value(process.resident_bytes));
        self.open_fds.set(gauge_value(process.open_fds));
        self.threads.set(gauge_value(process.threads));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let m = metrics();
        m.request("/", 200, Duration::from_millis(3));
        m.batch(4, 3);
        let text = m.encode(7);
        for name in [
            "webcluster_http_requests_total{route=\"/\",status=\"200\"}",
            "webcluster_http_request_duration_seconds_bucket",
            "webcluster_hits_recorded_total",
            "webcluster_hit_batch_size_bucket",
            "webcluster_http_open_connections 7",
            "webcluster_process_threads",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
