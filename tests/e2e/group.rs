//! The database as a 3-member Group Replication group (DB_MEMBERS=3), under
//! load through nginx: members killed, frozen and brought back. What must
//! hold: no client sees an error while a majority stands, every 200 is one
//! row on every member, and the members end up equal.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::http_client::{Client, Load, LoadReport};
use crate::support::{Stack, Totals, wait_for, wait_for_200};

const MEMBERS: usize = 3;
/// A group forms, and a member rejoins, within this on the 2-core machine.
const SETTLE: Duration = Duration::from_secs(120);

/// No error, no status but 200.
fn assert_all_200(report: &LoadReport, requests: u64, what: &str) {
    let first_errors = &report.errors[..report.errors.len().min(5)];
    assert!(
        report.errors.is_empty(),
        "{what}: {} failed requests, first: {first_errors:?}",
        report.errors.len()
    );
    assert_eq!(report.ok(), requests, "{what}: {:?}", report.statuses);
}

/// Every 200's request id has exactly one row on every member, and each
/// member holds counter == rows == the rows before plus the 200s.
fn assert_every_200_once_everywhere(stack: &Stack, ids: &[String], before: Totals, after: Totals) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "nginx gave each request its own id"
    );
    assert_eq!(
        after.rows - before.rows,
        ids.len() as u64,
        "one row per 200"
    );
    for i in 1..=MEMBERS {
        let (found, most) = stack.rows_for_ids(i, ids);
        assert_eq!(found, ids.len(), "member {i} holds a row for every 200");
        assert!(most <= 1, "member {i}: a request id with {most} rows");
    }
}

/// Kills (or freezes) a member while 32 clients load the stack; returns what
/// they saw. `during` runs once the load is under way.
fn under_load(stack: &Stack, requests: u64, during: impl FnOnce()) -> LoadReport {
    let load = Load::start(stack.http_addr(), 32, requests);
    load.wait_for_progress(requests / 5);
    during();
    load.join()
}

fn other_than(member: usize) -> usize {
    member % MEMBERS + 1
}

#[test]
fn losing_a_member_costs_latency_never_an_answer() {
    let mut stack = Stack::up_group("group-loss", 3, &[]);
    let start = stack.wait_members_agree(MEMBERS, SETTLE);
    let mut ids = Vec::new();

    // A secondary: no client notices.
    let primary = stack.primary(MEMBERS).expect("a primary");
    let secondary = other_than(primary);
    let report = under_load(&stack, 3_000, || {
        stack.signal_member(secondary, "KILL");
    });
    assert_all_200(&report, 3_000, "a secondary killed");
    ids.extend(report.ids_200);
    assert_eq!(stack.primary(MEMBERS), Some(primary), "the primary stayed");
    stack.ensure_up(3);
    stack.wait_members_agree(MEMBERS, SETTLE);

    // The primary: hits are held until another member takes over.
    let killed = stack.primary(MEMBERS).expect("a primary");
    let mut killed_at = None;
    let report = under_load(&stack, 6_000, || {
        stack.signal_member(killed, "KILL");
        killed_at = Some(Instant::now());
    });
    assert_all_200(&report, 6_000, "the primary killed");
    ids.extend(report.ids_200);
    let new_primary = stack.primary(MEMBERS).expect("a new primary");
    assert_ne!(new_primary, killed, "another member took over");
    if let Some(at) = killed_at {
        eprintln!(
            "failover: a new primary, and load done, {:?} after the kill",
            at.elapsed()
        );
    }
    stack.ensure_up(3);
    let after_kill = stack.wait_members_agree(MEMBERS, SETTLE);
    assert_every_200_once_everywhere(&stack, &ids, start, after_kill);

    // Frozen past its expulsion, then woken: it takes no write after that,
    // rejoins as a secondary, and every member agrees.
    let frozen = stack.primary(MEMBERS).expect("a primary");
    let before = after_kill;
    let report = under_load(&stack, 4_000, || {
        stack.signal_member(frozen, "STOP");
        wait_for(
            Duration::from_secs(60),
            "another member to take over",
            || {
                (1..=MEMBERS).filter(|&i| i != frozen).any(|i| {
                    stack
                        .member_role(i)
                        .is_some_and(|(s, r)| s == "ONLINE" && r == "PRIMARY")
                })
            },
        );
        stack.signal_member(frozen, "CONT");
    });
    assert_all_200(&report, 4_000, "the primary frozen");
    wait_for(SETTLE, "the woken member to be a secondary", || {
        stack
            .member_role(frozen)
            .is_some_and(|(state, role)| state == "ONLINE" && role == "SECONDARY")
    });
    let after = stack.wait_members_agree(MEMBERS, SETTLE);
    assert_every_200_once_everywhere(&stack, &report.ids_200, before, after);
}

#[test]
fn without_a_majority_hits_get_503_after_the_wait_and_service_returns_with_the_members() {
    let wait = Duration::from_secs(5);
    let mut stack = Stack::up_group("group-quorum", 1, &[("DB_FAILOVER_WAIT_MS", "5000")]);
    let before = stack.wait_members_agree(MEMBERS, SETTLE);
    let mut client = Client::new(stack.http_addr());
    let warm = client.get("/").expect("GET /");
    assert_eq!(warm.status, 200);

    let survivor = stack.primary(MEMBERS).expect("a primary");
    for i in (1..=MEMBERS).filter(|&i| i != survivor) {
        stack.signal_member(i, "KILL");
    }
    let started = Instant::now();
    let lost = client.get("/").expect("an answer, not a hang");
    let waited = started.elapsed();
    assert_eq!(lost.status, 503, "{}", lost.body);
    assert_eq!(lost.header("Retry-After"), Some("1"));
    assert!(waited >= wait, "503 only after the wait ({waited:?})");
    assert!(
        waited < Duration::from_secs(29),
        "within nginx's patience ({waited:?})"
    );
    assert_eq!(client.get("/readyz").expect("GET /readyz").status, 503);

    stack.ensure_up(1);
    let addr = stack.http_addr();
    wait_for_200(
        addr,
        "/readyz",
        SETTLE,
        "service to return with the members",
    );
    assert_eq!(client.get("/").expect("GET /").status, 200);
    let after = stack.wait_members_agree(MEMBERS, SETTLE);
    // The warm-up and the GET after recovery are counted; the
    // 503 may be (the group decides), never twice.
    assert!(
        after.rows >= before.rows + 2 && after.rows <= before.rows + 3,
        "{before:?} -> {after:?}"
    );
    if let Some(id) = warm.header("X-Request-ID") {
        for i in 1..=MEMBERS {
            assert_eq!(
                stack.rows_for_ids(i, &[id.to_owned()]),
                (1, 1),
                "member {i}"
            );
        }
    }
}
