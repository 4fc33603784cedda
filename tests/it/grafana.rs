//! `examples/grafana/latchd.json`: every series the dashboard queries, and every exact label
//! value it selects, is one a running latchd exports on `/metrics`; with promtool installed,
//! every expression is valid Prometheus query language.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{self, TestServer};

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/latchd.json");
    serde_json::from_str(&fs::read_to_string(path).expect("read the dashboard"))
        .expect("the dashboard is JSON")
}

/// Every query of the dashboard: the panels' `expr`s and the variables' queries.
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr" | "definition", Value::String(text)) => out.push(text.clone()),
                    _ => expressions(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, out)),
        _ => {}
    }
}

/// A series a query names: the metric, and its exact (`=`) label matchers.
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: Vec<(String, String)>,
}

/// The `latchd_*` selectors of one expression.
fn selectors(expr: &str) -> Vec<Selector> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = expr[i..].starts_with("latchd_") && (i == 0 || !ident(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !ident(bytes[j]))
            .unwrap_or(bytes.len());
        let mut selector = Selector {
            metric: expr[i..end].to_owned(),
            labels: Vec::new(),
        };
        i = end;
        if let Some(inside) = expr[i..].strip_prefix('{') {
            let close = inside.find('}').expect("a closed matcher list");
            for matcher in inside[..close].split(',') {
                let matcher = matcher.trim();
                // Regex and negative matchers select nothing in particular.
                if matcher.contains("=~") || matcher.contains("!=") || matcher.contains("!~") {
                    continue;
                }
                let (name, value) = matcher.split_once('=').expect("name=value");
                selector.labels.push((
                    name.trim().to_owned(),
                    value.trim().trim_matches('"').to_owned(),
                ));
            }
            i += close + 2;
        }
        found.push(selector);
    }
    found
}

/// Each series name of a `/metrics` text with the label pairs it carries.
fn exported(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut series: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, _value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let pairs = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect();
                (name, pairs)
            }
        };
        series.entry(name.to_owned()).or_default().push(labels);
    }
    series
}

#[test]
fn every_series_the_dashboard_queries_is_one_latchd_exports() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "0")]);
    // Traffic, so that labelled series have moved: a login, a failure, a rotation, a reuse,
    // a verification and a rejection.
    server.register("grace@example.com");
    let (access, refresh) = server.login("grace@example.com");
    server.post_json(
        "/v1/auth/login",
        &json!({"email": "grace@example.com", "password": "not the password at all"}),
    );
    assert_eq!(server.refresh(&refresh).status, 200);
    assert_eq!(server.refresh(&refresh).status, 401);
    server.get("/v1/auth/verify", Some(&access));
    server.get("/v1/auth/verify", Some("garbage"));
    let scrape = server.get("/metrics", None);
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let series = exported(&scrape.body);

    let mut exprs = Vec::new();
    expressions(&dashboard(), &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard lost its queries: {exprs:?}"
    );
    let mut queried = BTreeSet::new();
    for expr in &exprs {
        let found = selectors(expr);
        assert!(!found.is_empty(), "{expr:?} queries no latchd series");
        for selector in found {
            let Some(samples) = series.get(&selector.metric) else {
                panic!("{expr:?}: latchd exports no {}", selector.metric);
            };
            for (name, value) in &selector.labels {
                assert!(
                    samples.iter().any(|labels| labels.get(name) == Some(value)),
                    "{expr:?}: no {}{{{name}=\"{value}\"}} on /metrics",
                    selector.metric
                );
            }
            queried.insert(selector.metric);
        }
    }
    // What the dashboard is for: logins, refreshes, verifications, latency, live sessions.
    for metric in [
        "latchd_logins_total",
        "latchd_refreshes_total",
        "latchd_verifications_total",
        "latchd_request_duration_seconds_bucket",
        "latchd_families_live",
    ] {
        assert!(queried.contains(metric), "nothing queries {metric}");
    }
}

#[test]
fn the_selector_reader_finds_names_and_exact_labels() {
    let found = selectors(
        r#"histogram_quantile(0.5, sum by (le) (rate(latchd_a_bucket{instance=~"$i",route="/x"}[5m]))) / latchd_b"#,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].metric, "latchd_a_bucket");
    assert_eq!(found[0].labels, [("route".to_owned(), "/x".to_owned())]);
    assert_eq!(found[1].metric, "latchd_b");
    assert!(selectors("sum(rate(up[5m]))").is_empty());
}

#[test]
fn every_expression_is_valid_promql() {
    if !support::require("promtool", "prometheus") {
        return;
    }
    let mut exprs = Vec::new();
    expressions(&dashboard(), &mut exprs);
    // Grafana's variables, as Grafana would fill them in; label_values() is Grafana's, not
    // PromQL: its metric stands in for it.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(n, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "6h")
                .replace("$instance", ".*");
            let expr = match expr.strip_prefix("label_values(") {
                Some(rest) => rest.split(',').next().expect("a metric").to_owned(),
                None => expr,
            };
            json!({"record": format!("dashboard:query{n}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rules.json");
    // YAML is a superset of JSON: promtool reads this as a rules file.
    let doc = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    fs::write(&file, doc.to_string()).expect("write rules");
    let out = Command::new(support::tool_path("promtool").expect("found above"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
