//! `GET /metrics` over real HTTP: exact counter values after a known sequence of requests,
//! gauges, route labels, who may scrape, and `promtool check metrics` on the scraped text.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{self, TestServer};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const DURATION: &str = "latchd_request_duration_seconds";

#[test]
fn metrics_count_every_outcome_exactly() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "0")]);
    server.register("alice@example.com");
    let (a0, r0) = server.login("alice@example.com");
    let failed = server.post_json(
        "/v1/auth/login",
        &json!({"email": "alice@example.com", "password": "not the password at all"}),
    );
    failed.assert_error(401, "invalid_grant");
    assert_eq!(server.get("/v1/auth/verify", Some(&a0)).status, 200);

    let rotated = server.refresh(&r0);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (a1, r1) = rotated.pair();
    server.refresh(&r0).assert_error(401, "invalid_grant"); // reuse: family revoked
    server.refresh(&r1).assert_error(401, "invalid_grant"); // its family is revoked
    server.refresh("garbage").assert_error(401, "invalid_grant"); // not a refresh token
    assert_eq!(server.get("/v1/auth/verify", Some(&a1)).status, 401); // family_revoked
    assert_eq!(server.get("/v1/auth/verify", Some("garbage")).status, 401); // segments
    assert_eq!(server.get("/v1/auth/verify", None).status, 401); // no token: not counted

    let (a2, _) = server.login("alice@example.com");
    assert_eq!(server.post_auth("/v1/auth/logout", &a2).status, 204); // verifies a2 first
    assert_eq!(server.get("/v1/auth/me", Some(&a2)).status, 401); // family_revoked again
    server.login("alice@example.com"); // the one live family
    assert_eq!(server.get("/no/such/route/secret-XYZ", None).status, 404);

    let scrape = server.get("/metrics", None);
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert_eq!(scrape.header("content-type"), Some(CONTENT_TYPE));
    let text = scrape.body;
    let got = samples(&text);

    let expected_counters: BTreeMap<&str, u64> = [
        (r#"latchd_logins_total{outcome="ok"}"#, 3),
        (r#"latchd_logins_total{outcome="failed"}"#, 1),
        (r#"latchd_refreshes_total{outcome="rotated"}"#, 1),
        (r#"latchd_refreshes_total{outcome="reused"}"#, 1),
        (r#"latchd_refreshes_total{outcome="revoked"}"#, 1),
        (r#"latchd_refreshes_total{outcome="invalid"}"#, 1),
        (r#"latchd_verifications_total{result="ok"}"#, 2),
        (
            r#"latchd_verifications_total{result="rejected",reason="family_revoked"}"#,
            2,
        ),
        (
            r#"latchd_verifications_total{result="rejected",reason="segments"}"#,
            1,
        ),
        ("latchd_registrations_total", 1),
    ]
    .into_iter()
    .collect();
    for (series, want) in &expected_counters {
        assert_eq!(got.get(*series), Some(want), "{series}\n{text}");
    }
    // Every other counter sample exists (preallocated) and is zero.
    for series in [
        r#"latchd_logins_total{outcome="rate_limited"}"#,
        r#"latchd_refreshes_total{outcome="retried"}"#,
        r#"latchd_refreshes_total{outcome="expired"}"#,
        r#"latchd_refreshes_total{outcome="unknown"}"#,
        r#"latchd_verifications_total{result="rejected",reason="signature"}"#,
        r#"latchd_verifications_total{result="rejected",reason="blacklisted"}"#,
    ] {
        assert_eq!(got.get(series), Some(&0), "{series}\n{text}");
    }
    let counters = got
        .iter()
        .filter(|(s, _)| s.contains("_total"))
        .filter(|(s, v)| **v != 0 && !expected_counters.contains_key(s.as_str()));
    assert_eq!(counters.count(), 0, "a counter moved unexpectedly:\n{text}");

    assert_eq!(got.get("latchd_users"), Some(&1), "{text}");
    assert_eq!(got.get("latchd_families_live"), Some(&1), "{text}");
    assert_eq!(got.get("latchd_blacklist_rows"), Some(&1), "{text}");

    for (route, requests) in [
        ("/v1/users", 1),
        ("/v1/auth/login", 4),
        ("/v1/auth/refresh", 4),
        ("/v1/auth/verify", 4),
        ("/v1/auth/logout", 1),
        ("/v1/auth/me", 1),
        ("other", 1),
        ("/metrics", 0), // a scrape is timed once it has answered
        ("/healthz", 0),
    ] {
        let count = format!("{DURATION}_count{{route=\"{route}\"}}");
        let inf = format!("{DURATION}_bucket{{route=\"{route}\",le=\"+Inf\"}}");
        assert_eq!(got.get(&count), Some(&requests), "{count}\n{text}");
        assert_eq!(got.get(&inf), Some(&requests), "{inf}\n{text}");
    }
    assert!(
        !text.contains("secret-XYZ") && !text.contains("/no/such"),
        "a raw path leaked into the labels"
    );
    assert!(!text.contains("alice"), "an email leaked");

    let again = samples(&server.get("/metrics", None).body);
    assert_eq!(
        again.get(&format!("{DURATION}_count{{route=\"/metrics\"}}")),
        Some(&1)
    );

    promtool_check(&text);
}

#[test]
fn a_retry_inside_the_grace_is_counted_as_retried() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "60")]);
    server.register("bob@example.com");
    let (_, r0) = server.login("bob@example.com");
    assert_eq!(server.refresh(&r0).status, 200);
    assert_eq!(server.refresh(&r0).status, 200); // a lost response, retried
    let got = samples(&server.get("/metrics", None).body);
    assert_eq!(
        got.get(r#"latchd_refreshes_total{outcome="rotated"}"#),
        Some(&1)
    );
    assert_eq!(
        got.get(r#"latchd_refreshes_total{outcome="retried"}"#),
        Some(&1)
    );
    assert_eq!(
        got.get(r#"latchd_refreshes_total{outcome="reused"}"#),
        Some(&0)
    );
    assert_eq!(got.get("latchd_families_live"), Some(&1));
}

#[test]
fn loopback_may_scrape_even_when_an_allow_list_is_set() {
    let server = TestServer::start_with(&[("LATCHD_METRICS_ALLOW", "192.0.2.10,2001:db8::10")]);
    let scrape = server.get("/metrics", None);
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert_eq!(scrape.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(samples(&scrape.body).get("latchd_users"), Some(&0));
    let post = server.request("POST", "/metrics", &[], b"");
    post.assert_error(405, "invalid_request");
}

/// `name{labels}` -> value for every sample line; panics on a value that is not a whole
/// number except histogram sums.
fn samples(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(&format!("{DURATION}_sum")))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample has a value");
            let value = value.parse().unwrap_or_else(|_| panic!("not a count: {l}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// `promtool check metrics` on `text`. Without promtool: a failure when `CI` is set (so CI
/// cannot skip it silently; `.ci/run` installs it), else a note (see [`support::require`]).
fn promtool_check(text: &str) {
    if !support::require("promtool", "prometheus") {
        return;
    }
    let mut child = Command::new(support::tool_path("promtool").expect("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- text ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint findings are printed even when the exit status is 0 in some versions.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.trim().is_empty(), "promtool findings:\n{report}");
}

#[test]
fn a_scrape_forwarded_by_a_local_proxy_is_judged_by_its_real_client() {
    let server = TestServer::start();
    // A reverse proxy on this host forwarding /metrics for someone on the internet.
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        server
            .request("GET", "/metrics", &[(header, "203.0.113.7")], b"")
            .assert_error(403, "insufficient_scope");
    }
    // With the proxy trusted and the real client allowed, it may scrape.
    let server = TestServer::start_with(&[
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
        ("LATCHD_METRICS_ALLOW", "203.0.113.7"),
    ]);
    let scrape = server.request(
        "GET",
        "/metrics",
        &[("X-Forwarded-For", "203.0.113.7")],
        b"",
    );
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    server
        .request(
            "GET",
            "/metrics",
            &[("X-Forwarded-For", "198.51.100.1")],
            b"",
        )
        .assert_error(403, "insufficient_scope");
}
