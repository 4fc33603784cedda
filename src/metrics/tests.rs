use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::model::{AccessDenied, UserId};
use crate::token::{every_token_error, TokenError};

const COUNTS: Counts = Counts {
    users: 3,
    families: 2,
    blacklist: 1,
};

const EVERY_DENIAL: [AccessDenied; 8] = AccessDenied::ALL;

/// `name{labels}` -> value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample has a value");
            (series.to_owned(), value.to_owned())
        })
        .collect()
}

fn value(text: &str, series: &str) -> u64 {
    samples(text)
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .expect("integer sample")
}

/// The family a sample belongs to: its name less any histogram suffix.
fn family_of(series: &str) -> &str {
    let name = series.split(['{', ' ']).next().expect("name");
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|base| *base == "latchd_request_duration_seconds")
        .unwrap_or(name)
}

#[test]
fn every_family_has_help_and_type_before_its_samples_in_name_order() {
    let text = Metrics::new().render(COUNTS);
    assert!(text.ends_with('\n'), "trailing newline");
    assert!(!text.contains("\n\n"), "no blank lines");
    let mut families: Vec<(String, String)> = Vec::new(); // (name, type)
    let mut help: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("help text");
            assert!(!text.is_empty(), "{name}: empty help");
            help = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            assert_eq!(help.as_deref(), Some(name), "HELP right before TYPE");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{kind}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            families.push((name.to_owned(), kind.to_owned()));
        } else {
            let (current, _) = families.last().expect("sample before any TYPE");
            assert_eq!(
                family_of(line),
                current,
                "sample outside its family: {line}"
            );
        }
    }
    let names: Vec<&str> = families.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "latchd_blacklist_rows",
            "latchd_families_live",
            "latchd_logins_total",
            "latchd_refreshes_total",
            "latchd_registrations_total",
            "latchd_second_factor_total",
            "latchd_users",
            "latchd_verifications_total",
        ],
        "every family, once each, in name order"
    );
}

#[test]
fn render_is_stable_and_gauges_come_from_counts() {
    let metrics = Metrics::new();
    assert_eq!(metrics.render(COUNTS), metrics.render(COUNTS));
    let text = metrics.render(COUNTS);
    assert_eq!(value(&text, "latchd_users"), 3);
    assert_eq!(value(&text, "latchd_families_live"), 2);
    assert_eq!(value(&text, "latchd_blacklist_rows"), 1);
}

#[test]
fn counters_count_each_outcome_under_its_own_label() {
    let metrics = Metrics::new();
    metrics.on(&Event::Login {
        outcome: LoginOutcome::Ok,
        user: None,
    });
    metrics.on(&Event::Login {
        outcome: LoginOutcome::Ok,
        user: None,
    });
    metrics.on(&Event::Login {
        outcome: LoginOutcome::Failed,
        user: None,
    });
    metrics.on(&Event::Login {
        outcome: LoginOutcome::RateLimited,
        user: None,
    });
    for (outcome, times) in [
        (RefreshOutcome::Rotated, 1),
        (RefreshOutcome::Retried, 2),
        (RefreshOutcome::Reused, 3),
        (RefreshOutcome::Expired, 4),
        (RefreshOutcome::Revoked, 5),
        (RefreshOutcome::Unknown, 6),
        (RefreshOutcome::Invalid, 7),
    ] {
        for _ in 0..times {
            metrics.on(&Event::Refresh(outcome));
        }
    }
    metrics.on(&Event::Registered {
        user: UserId(Uuid::nil()),
    });
    metrics.on(&Event::Verified);
    metrics.on(&Event::Rejected(Rejection::Token(TokenError::BadSignature)));
    metrics.on(&Event::Rejected(Rejection::Token(
        TokenError::MissingClaim("jti"),
    )));
    metrics.on(&Event::Rejected(Rejection::State(
        AccessDenied::FamilyRevoked,
    )));
    let text = metrics.render(COUNTS);
    let got = |s: &str| value(&text, s);
    assert_eq!(got(r#"latchd_logins_total{outcome="ok"}"#), 2);
    assert_eq!(got(r#"latchd_logins_total{outcome="failed"}"#), 1);
    assert_eq!(got(r#"latchd_logins_total{outcome="rate_limited"}"#), 1);
    for (i, outcome) in [
        "rotated", "retried", "reused", "expired", "revoked", "unknown", "invalid",
    ]
    .iter()
    .enumerate()
    {
        let series = format!("latchd_refreshes_total{{outcome=\"{outcome}\"}}");
        assert_eq!(got(&series), i as u64 + 1, "{series}");
    }
    assert_eq!(got("latchd_registrations_total"), 1);
    assert_eq!(got(r#"latchd_verifications_total{result="ok"}"#), 1);
    let rejected = |reason: &str| {
        got(&format!(
            "latchd_verifications_total{{result=\"rejected\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(rejected("signature"), 1);
    assert_eq!(rejected("missing_claim"), 1);
    assert_eq!(rejected("family_revoked"), 1);
    let total_rejected: u64 = Rejection::labels().map(rejected).sum();
    assert_eq!(total_rejected, 3, "nothing else moved");
}

#[test]
fn every_rejection_reason_has_its_own_preallocated_label() {
    let metrics = Metrics::new();
    let mut reasons: Vec<&str> = every_token_error()
        .into_iter()
        .map(TokenError::reason)
        .collect();
    reasons.extend(EVERY_DENIAL.map(AccessDenied::label));
    let listed: Vec<&str> = Rejection::labels().collect();
    for reason in &reasons {
        assert!(listed.contains(reason), "{reason} has no series");
    }
    let mut unique = reasons.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), reasons.len(), "two rules share a label");
    assert_eq!(reasons.len(), listed.len(), "no label without a rule");
    for e in every_token_error() {
        metrics.on(&Event::Rejected(Rejection::Token(e)));
    }
    for d in EVERY_DENIAL {
        metrics.on(&Event::Rejected(Rejection::State(d)));
    }
    let text = metrics.render(COUNTS);
    for reason in &reasons {
        let series =
            format!("latchd_verifications_total{{result=\"rejected\",reason=\"{reason}\"}}");
        assert_eq!(value(&text, &series), 1, "{series}");
    }
}

#[test]
fn label_values_come_only_from_the_fixed_lists() {
    let metrics = Metrics::new();
    metrics.on(&Event::Refresh(RefreshOutcome::Reused));
    let text = metrics.render(COUNTS);
    let mut allowed: Vec<&str> = Vec::new();
    allowed.extend(LoginOutcome::ALL.map(LoginOutcome::label));
    allowed.extend(RefreshOutcome::ALL.map(RefreshOutcome::label));
    allowed.extend(Rejection::labels());
    allowed.extend(Event::SECOND_FACTOR);
    allowed.extend(["ok", "rejected"]);
    let series = samples(&text);
    for name in series.keys() {
        let Some((_, labels)) = name.split_once('{') else {
            continue;
        };
        let labels = labels.strip_suffix('}').expect("closing brace");
        for pair in labels.split("\",") {
            let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
            assert!(
                ["outcome", "result", "reason", "event"].contains(&key),
                "{name}"
            );
            let value = value.trim_end_matches('"');
            assert!(allowed.contains(&value), "{name}: {value}");
            assert!(!value.contains(['"', '\\', '\n']), "{name}: needs escaping");
        }
    }
    // Every series exists from the start: no label appears only once something happened.
    assert_eq!(samples(&Metrics::new().render(COUNTS)).len(), series.len());
}

#[test]
fn histogram_buckets_are_cumulative_and_end_with_inf_equal_to_count() {
    let (login, verify, quiet) = (Histogram::new(), Histogram::new(), Histogram::new());
    let observations = [
        Duration::ZERO,
        Duration::from_micros(500), // exactly on a bound: counted in that bucket (le)
        Duration::from_micros(501),
        Duration::from_millis(7),
        Duration::from_millis(7),
        Duration::from_secs(3),
        Duration::from_secs(11), // above the largest bound: +Inf only
    ];
    for d in observations {
        login.observe(d);
    }
    verify.observe(Duration::from_millis(1));
    let name = "latchd_request_duration_seconds";
    let mut text = String::new();
    write_family(&mut text, name, "histogram", "Time by route.").unwrap();
    for (route, h) in [
        ("/v1/auth/login", &login),
        ("/v1/auth/verify", &verify),
        ("/healthz", &quiet),
    ] {
        h.write_to(&mut text, name, route).unwrap();
    }
    let bucket = |route: &str, le: &str| {
        value(
            &text,
            &format!("{name}_bucket{{route=\"{route}\",le=\"{le}\"}}"),
        )
    };
    let expected_login = [2, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6];
    for ((le, _), want) in BUCKETS.iter().zip(expected_login) {
        assert_eq!(bucket("/v1/auth/login", le), want, "le={le}");
    }
    for route in ["/v1/auth/login", "/v1/auth/verify", "/healthz"] {
        let mut previous = 0;
        for (le, _) in BUCKETS {
            let n = bucket(route, le);
            assert!(n >= previous, "{route} le={le}: buckets must be cumulative");
            previous = n;
        }
        let inf = bucket(route, "+Inf");
        assert!(inf >= previous, "{route}");
        let count = value(&text, &format!("{name}_count{{route=\"{route}\"}}"));
        assert_eq!(inf, count, "{route}: +Inf equals _count");
    }
    assert_eq!(bucket("/v1/auth/login", "+Inf"), 7);
    assert_eq!(bucket("/v1/auth/verify", "0.001"), 1);
    assert_eq!(bucket("/v1/auth/verify", "0.0005"), 0);
    assert_eq!(bucket("/healthz", "+Inf"), 0);
    let series = samples(&text);
    assert_eq!(
        series[&format!("{name}_sum{{route=\"/v1/auth/login\"}}")],
        "14.015001000"
    );
    assert_eq!(
        series[&format!("{name}_sum{{route=\"/v1/auth/verify\"}}")],
        "0.001000000"
    );
    assert_eq!(
        series[&format!("{name}_sum{{route=\"/healthz\"}}")],
        "0.000000000"
    );
    // Bucket lines of one route come in ascending `le` order, then _sum and _count.
    let login_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("route=\"/v1/auth/login\""))
        .collect();
    assert_eq!(login_lines.len(), BUCKETS.len() + 3);
    assert!(login_lines[BUCKETS.len()].contains("le=\"+Inf\""));
    assert!(login_lines[BUCKETS.len() + 1].starts_with(&format!("{name}_sum")));
    assert!(login_lines[BUCKETS.len() + 2].starts_with(&format!("{name}_count")));
}

#[test]
fn bucket_labels_match_their_bounds_in_ascending_order() {
    for window in BUCKETS.windows(2) {
        assert!(window[0].1 < window[1].1, "{window:?}");
    }
    for (le, nanos) in BUCKETS {
        let seconds: f64 = le.parse().expect("le is a float");
        #[allow(clippy::cast_precision_loss)] // bounds are far below 2^52
        let from_nanos = nanos as f64 / 1e9;
        assert!((seconds - from_nanos).abs() < 1e-12, "{le} vs {nanos}");
    }
}

#[test]
fn metrics_are_allowed_to_loopback_and_listed_addresses_only() {
    let listed: IpAddr = "10.0.0.7".parse().unwrap();
    let listed_v6: IpAddr = "2001:db8::7".parse().unwrap();
    let allow = [listed, listed_v6];
    let cases: [(&str, IpAddr, &[IpAddr], bool); 12] = [
        ("v4 loopback", IpAddr::V4(Ipv4Addr::LOCALHOST), &[], true),
        (
            "v4 loopback range",
            "127.8.9.10".parse().unwrap(),
            &[],
            true,
        ),
        ("v6 loopback", IpAddr::V6(Ipv6Addr::LOCALHOST), &[], true),
        (
            "v4-mapped loopback",
            "::ffff:127.0.0.1".parse().unwrap(),
            &[],
            true,
        ),
        ("stranger", "192.0.2.1".parse().unwrap(), &[], false),
        (
            "stranger, list set",
            "192.0.2.1".parse().unwrap(),
            &allow,
            false,
        ),
        ("listed", listed, &allow, true),
        (
            "listed, v4-mapped",
            "::ffff:10.0.0.7".parse().unwrap(),
            &allow,
            true,
        ),
        ("listed v6", listed_v6, &allow, true),
        (
            "neighbour of listed",
            "10.0.0.8".parse().unwrap(),
            &allow,
            false,
        ),
        ("unspecified", IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[], false),
        (
            "v4-compatible is not mapped",
            "::127.0.0.1".parse().unwrap(),
            &[],
            false,
        ),
    ];
    for (name, peer, allow, want) in cases {
        assert_eq!(metrics_allowed(peer, allow), want, "{name}");
    }
    let mapped_entry: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
    assert!(
        metrics_allowed(listed, &[mapped_entry]),
        "a v4-mapped list entry"
    );
}

#[test]
fn second_factor_events_are_counted_by_kind() {
    let metrics = Metrics::new();
    let user = UserId(Uuid::nil());
    let events = [
        Event::MfaEnabled { user },
        Event::MfaDisabled { user },
        Event::MfaFailed { user },
        Event::RecoveryCodeUsed { user, left: 3 },
        Event::TotpReset { user, actor: None },
    ];
    for (i, event) in events.iter().enumerate() {
        for _ in 0..=i {
            metrics.on(event);
        }
    }
    let text = metrics.render(COUNTS);
    for (i, label) in Event::SECOND_FACTOR.iter().enumerate() {
        let series = format!("latchd_second_factor_total{{event=\"{label}\"}}");
        assert_eq!(value(&text, &series), i as u64 + 1, "{series}");
    }
}
