use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::http_client::{Client, Load};
use crate::support::{Stack, wait_for};

#[test]
fn a_client_that_keeps_its_cookie_stays_on_one_instance_under_load() {
    let stack = Stack::up("sticky", 3);
    let addr = stack.http_addr();
    let mut client = Client::new(addr);
    let first = client.get("/").expect("first request");
    assert_eq!(first.status, 200);
    assert!(
        client.jar.contains_key("webcluster_route") && client.jar.contains_key("internal_ip"),
        "the first answer sets nginx's route cookie and the app's own: {:?}",
        client.jar
    );
    let home = first.body.trim().to_owned();

    let background = Load::start(addr, 16, 3_000);
    for i in 0..300 {
        let response = client.get("/").expect("sticky request");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body.trim(),
            home,
            "request {i} left the pinned instance"
        );
        assert_eq!(
            response.sticky_cookie(),
            None,
            "a pinned client is not re-pinned"
        );
    }
    let load = background.join();
    assert_eq!(
        load.ok(),
        3_000,
        "background load: {:?} {:?}",
        load.statuses,
        load.errors
    );
}

#[test]
fn new_clients_spread_over_all_instances() {
    let stack = Stack::up("spread", 3);
    let seen: HashSet<String> = (0..30)
        .map(|_| {
            let response = Client::new(stack.http_addr()).get("/").expect("request");
            assert_eq!(response.status, 200);
            response.body.trim().to_owned()
        })
        .collect();
    assert_eq!(
        seen,
        stack.instance_ips(3),
        "30 new clients reach every instance"
    );
}

#[test]
fn a_forged_or_unknown_cookie_is_balanced_and_never_routed_to() {
    let stack = Stack::up("forged", 3);
    let known: HashSet<String> = stack.instance_ips(3);
    for cookie in [
        "internal_ip=10.9.9.9",
        "internal_ip=127.0.0.1",
        "internal_ip=<script>",
        "internal_ip=",
        "webcluster_route=00000000000000000000000000000000",
        "webcluster_route=127.0.0.1:8000",
        "webcluster_route=../../../etc/passwd",
    ] {
        let mut client = Client::with_fixed_cookie(stack.http_addr(), Some(cookie));
        let seen: HashSet<String> = (0..12)
            .map(|_| {
                let response = client.get("/").expect("request");
                assert_eq!(response.status, 200, "cookie {cookie}");
                response.body.trim().to_owned()
            })
            .collect();
        assert!(
            seen.is_subset(&known),
            "cookie {cookie} reached {seen:?}, outside {known:?}"
        );
        assert!(seen.len() > 1, "cookie {cookie} was not balanced: {seen:?}");
    }
}

#[test]
fn killing_the_pinned_instance_moves_its_client_which_then_re_sticks() {
    let mut stack = Stack::up("failover", 3);
    let mut client = Client::new(stack.http_addr());
    let home = client
        .get("/")
        .expect("first request")
        .body
        .trim()
        .to_owned();
    let pinned = stack.instance_of(&home);

    stack.kill_instance(pinned, "KILL");

    let moved = client.get("/").expect("request after the kill");
    assert_eq!(moved.status, 200, "nginx fails over instead of erroring");
    let new_home = moved.body.trim().to_owned();
    assert_ne!(new_home, home, "the client moved off the dead instance");
    assert_eq!(
        moved.sticky_cookie(),
        Some(format!("internal_ip={new_home}")),
        "the new instance pins the client"
    );
    for i in 0..50 {
        let response = client.get("/").expect("request after failover");
        assert_eq!(
            response.body.trim(),
            new_home,
            "request {i} after failover left the new instance"
        );
    }

    // The dead instance comes back (as after a container restart); the client stays put.
    stack.ensure_up(3);
    for _ in 0..20 {
        assert_eq!(client.get("/").expect("request").body.trim(), new_home);
    }
}

#[test]
fn scaling_up_brings_a_new_instance_into_rotation_without_a_reload() {
    let mut stack = Stack::up("scale", 2);
    let nginx_before = stack.nginx_pids();
    let mut pinned = Client::new(stack.http_addr());
    let home = pinned
        .get("/")
        .expect("first request")
        .body
        .trim()
        .to_owned();

    stack.scale(3);

    let newcomer = stack.instance_ip(3);
    let addr = stack.http_addr();
    wait_for(
        Duration::from_secs(20),
        "a new client to reach the new instance",
        || {
            Client::new(addr)
                .get("/")
                .is_ok_and(|r| r.body.trim() == newcomer)
        },
    );
    assert_eq!(
        stack.nginx_pids(),
        nginx_before,
        "nginx was neither reloaded nor restarted"
    );
    for _ in 0..20 {
        assert_eq!(
            pinned.get("/").expect("request").body.trim(),
            home,
            "the pinned client stayed put"
        );
    }
}

/// Two nginx replicas with the same configuration and no shared state: a
/// client whose requests alternate between them stays on one instance, and
/// new clients still spread.
#[test]
fn a_client_stays_on_its_instance_whichever_nginx_replica_it_reaches() {
    let stack = Stack::up("two-nginx", 3);
    let _second = stack.second_nginx(18081);
    let entries = [stack.http_addr(), SocketAddr::from(([127, 0, 0, 1], 18081))];
    let mut homes = HashSet::new();
    for c in 0..6 {
        let mut client = Client::new(entries[c % 2]);
        let home = client
            .get("/")
            .expect("first request")
            .body
            .trim()
            .to_owned();
        for i in 1..=20 {
            client.switch_to(entries[(c + i) % 2]);
            let response = client.get("/").expect("request");
            assert_eq!(response.status, 200);
            assert_eq!(
                response.body.trim(),
                home,
                "client {c}, request {i} through nginx {} left its instance",
                (c + i) % 2 + 1
            );
        }
        homes.insert(home);
    }
    assert!(homes.len() > 1, "new clients spread: {homes:?}");
}

#[test]
fn one_setting_sets_the_lifetime_of_both_cookies() {
    let stack = Stack::up_with("cookie-ttl", 1, &[("COOKIE_TTL_SECONDS", "600")]);
    let response = Client::new(stack.http_addr()).get("/").expect("request");
    assert_eq!(response.status, 200);
    let set_cookies: Vec<&str> = response.headers_named("Set-Cookie").collect();
    for name in ["webcluster_route", "internal_ip"] {
        let line = set_cookies
            .iter()
            .find(|line| line.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie in {set_cookies:?}"));
        let attributes: Vec<String> = line
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert!(
            attributes.iter().any(|a| a == "max-age=600"),
            "{name} lives COOKIE_TTL_SECONDS: {line}"
        );
    }
}
