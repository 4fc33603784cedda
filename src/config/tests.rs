use std::collections::HashMap;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn defaults_match_the_contract() {
    let c = config(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.db, PathBuf::from("./latchd.redb"));
    assert_eq!(c.store.cache_bytes, 8 << 20);
    let a = &c.auth;
    assert!(a.signing_key.is_none());
    assert_eq!(
        (a.issuer.as_str(), a.audience.as_str()),
        ("latchd", "latchd")
    );
    assert_eq!(a.client_id, "latchd");
    assert_eq!(a.access_ttl_secs, 900);
    assert_eq!(a.session.refresh_ttl_secs, 1_209_600);
    assert_eq!(a.session.session_max_secs, 2_592_000);
    assert_eq!(a.leeway_secs, 5);
    assert_eq!(a.session.grace_secs, 10);
    assert_eq!(a.password_min, 15);
    assert_eq!(a.pbkdf2_iterations.get(), 600_000);
    assert!(c.http.cookie_secure && a.open_registration && !c.log_json);
    assert!(a.hash_threads >= 1);
    assert_eq!(a.hash_priority, HashPriority::Nice(10));
    assert_eq!(
        (a.limits.account_failures, a.limits.address_failures_per_min),
        (5, 20)
    );
}

#[test]
fn the_listed_defaults_are_the_layers_own() {
    let c = config(&[]).unwrap();
    let want = crate::auth::Settings::default();
    // Every field but the signing key (no Debug of secrets needed here: it is None on both).
    assert_eq!(format!("{:?}", c.auth), format!("{want:?}"));
    assert_eq!(c.http, crate::http::Settings::default());
    assert_eq!(c.store, crate::store::Settings::default());
}

#[test]
fn every_listed_default_value_parses_to_the_default() {
    let given: Vec<(&str, &str)> = VARS
        .iter()
        .filter_map(|v| match v.default {
            Shown::Value(text) => Some((v.name, text)),
            Shown::Described(_) => None,
        })
        .collect();
    let explicit = config(&given).unwrap();
    let implicit = config(&[]).unwrap();
    assert_eq!(format!("{explicit:?}"), format!("{implicit:?}"));
}

#[test]
fn every_variable_but_the_key_has_a_flag_and_names_are_unique() {
    let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), VARS.len());
    for v in VARS {
        assert!(v.name.starts_with("LATCHD_"), "{}", v.name);
        let want = v.name["LATCHD_".len()..]
            .to_ascii_lowercase()
            .replace('_', "-");
        match v.flag {
            Some(flag) => assert_eq!(flag, want, "{}", v.name),
            None => assert!(
                ["LATCHD_SIGNING_KEY", "LATCHD_DATABASE_URL"].contains(&v.name),
                "{} holds a secret?",
                v.name
            ),
        }
        assert!(!v.help.is_empty());
    }
}

#[test]
fn the_readme_configuration_table_is_this_list() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a Configuration section");
    let rows: Vec<(String, String)> = section
        .lines()
        .skip_while(|l| !l.starts_with("| `LATCHD_"))
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect();
    let listed: Vec<(String, String)> = VARS
        .iter()
        .map(|v| (v.name.to_owned(), v.default.text().to_owned()))
        .collect();
    assert_eq!(rows, listed, "README's table drifted from config::VARS");
}

#[test]
fn login_limits_are_positive_counts() {
    let c = config(&[
        ("LATCHD_LOGIN_ACCOUNT_FAILURES", "3"),
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "100"),
    ])
    .unwrap();
    assert_eq!(
        (
            c.auth.limits.account_failures,
            c.auth.limits.address_failures_per_min
        ),
        (3, 100)
    );
    let errors = config(&[
        ("LATCHD_LOGIN_ACCOUNT_FAILURES", "0"),
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "many"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var).collect();
    assert_eq!(
        vars,
        [
            "LATCHD_LOGIN_ACCOUNT_FAILURES",
            "LATCHD_LOGIN_ADDRESS_PER_MIN"
        ]
    );
}

#[test]
fn client_id_defaults_to_the_configured_issuer() {
    let c = config(&[("LATCHD_ISSUER", "https://auth.example")]).unwrap();
    assert_eq!(c.auth.client_id, "https://auth.example");
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = config(&[
        ("LATCHD_LISTEN", "nowhere"),
        ("LATCHD_SIGNING_KEY", "c2hvcnQ"),
        ("LATCHD_ACCESS_TTL", "0"),
        ("LATCHD_REFRESH_TTL", "0"),
        ("LATCHD_SESSION_MAX", "-5"),
        ("LATCHD_PASSWORD_MIN", "7"),
        ("LATCHD_PBKDF2_ITERATIONS", "0"),
        ("LATCHD_COOKIE_SECURE", "maybe"),
        ("LATCHD_TRUSTED_PROXIES", "10.0.0.1,not-an-ip"),
        ("LATCHD_ISSUER", " "),
        ("LATCHD_HASH_PRIORITY", "20"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = errors.iter().map(|e| e.var).collect();
    assert_eq!(
        vars,
        [
            "LATCHD_LISTEN",
            "LATCHD_SIGNING_KEY",
            "LATCHD_ISSUER",
            "LATCHD_ACCESS_TTL",
            "LATCHD_REFRESH_TTL",
            "LATCHD_SESSION_MAX",
            "LATCHD_PASSWORD_MIN",
            "LATCHD_PBKDF2_ITERATIONS",
            "LATCHD_COOKIE_SECURE",
            "LATCHD_TRUSTED_PROXIES",
            "LATCHD_HASH_PRIORITY",
        ]
    );
    let key = errors
        .iter()
        .find(|e| e.var == "LATCHD_SIGNING_KEY")
        .unwrap();
    assert!(key.to_string().contains("5 bytes"), "{key}");
}

#[test]
fn a_good_key_is_taken_and_a_padded_one_refused() {
    let key = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
    assert!(config(&[("LATCHD_SIGNING_KEY", key)])
        .unwrap()
        .auth
        .signing_key
        .is_some());
    let errors = config(&[("LATCHD_SIGNING_KEY", &format!("{key}="))]).unwrap_err();
    assert!(errors[0].problem.contains("base64url"), "{}", errors[0]);
}

#[test]
fn hash_priority_takes_idle_normal_or_a_niceness() {
    for (text, want) in [
        ("idle", HashPriority::Idle),
        ("normal", HashPriority::Normal),
        ("1", HashPriority::Nice(1)),
        ("19", HashPriority::Nice(19)),
    ] {
        let c = config(&[("LATCHD_HASH_PRIORITY", text)]).unwrap();
        assert_eq!(c.auth.hash_priority, want, "{text}");
    }
    for bad in ["0", "20", "-1", "low"] {
        assert!(config(&[("LATCHD_HASH_PRIORITY", bad)]).is_err(), "{bad}");
    }
}

#[test]
fn refresh_ttl_cannot_exceed_the_session_maximum() {
    let errors =
        config(&[("LATCHD_REFRESH_TTL", "100"), ("LATCHD_SESSION_MAX", "50")]).unwrap_err();
    assert_eq!(errors[0].var, "LATCHD_REFRESH_TTL");
}

#[test]
fn cache_size_is_whole_mib_within_bounds() {
    let c = config(&[("LATCHD_CACHE_MB", "64")]).unwrap();
    assert_eq!(c.store.cache_bytes, 64 << 20);
    let c = config(&[("LATCHD_CACHE_MB", "65536")]).unwrap();
    assert_eq!(c.store.cache_bytes, 65_536 << 20);
    for bad in [
        "0",
        "-1",
        "1.5",
        "65537",
        "16MB",
        "",
        "99999999999999999999",
    ] {
        let errors = config(&[("LATCHD_CACHE_MB", bad)]).unwrap_err();
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].var, "LATCHD_CACHE_MB", "{bad}");
        assert!(
            errors[0].problem.contains("MiB from 1 to 65536"),
            "{bad}: {}",
            errors[0]
        );
    }
}

#[test]
fn a_log_filter_naming_no_known_level_or_target_is_refused() {
    for (good, filter) in [
        ("info", "info"),
        ("WARN", "WARN"),
        ("off", "off"),
        ("warn,latchd::access=off", "warn,latchd::access=off"),
        ("latchd=debug", "latchd=debug"),
        (
            " latchd::http::server = trace, h2=debug",
            "latchd::http::server=trace,h2=debug",
        ),
        ("latchd::store", "latchd::store"),
    ] {
        let c = config(&[("LATCHD_LOG", good)]).unwrap_or_else(|e| panic!("{good}: {e:?}"));
        assert_eq!(c.log, filter, "{good}");
    }
    for bad in [
        "verbose",
        "",
        "inf",
        "info,",
        "latchd=loud",
        "hyper=debug",
        "latchdx=info",
        "latchd::acces=off",
        "=info",
        "info=latchd",
    ] {
        let errors = config(&[("LATCHD_LOG", bad)]).unwrap_err();
        assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
        assert_eq!(errors[0].var, "LATCHD_LOG", "{bad:?}");
    }
}

#[test]
fn the_log_targets_are_the_crates_modules() {
    let modules: Vec<String> = include_str!("../lib.rs")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|name| format!("latchd::{}", name.trim_end_matches(';')))
        .collect();
    let listed: Vec<&str> = LOG_TARGETS
        .iter()
        .copied()
        .filter(|t| t.starts_with("latchd::") && *t != "latchd::access")
        .collect();
    assert_eq!(listed, modules);
}

#[test]
fn trusted_proxies_take_addresses_and_ranges_and_name_a_bad_one() {
    let c = config(&[(
        "LATCHD_TRUSTED_PROXIES",
        "127.0.0.1, 172.16.0.0/12,fd00::/8",
    )])
    .unwrap();
    let want = ["127.0.0.1", "172.16.0.0/12", "fd00::/8"]
        .map(|r| AddressRange::parse(r).unwrap())
        .to_vec();
    assert_eq!(c.http.trusted_proxies, TrustedProxies::new(want));
    for (bad, names) in [
        ("10.0.0.1,172.16.0.1/12", "172.16.0.0/12"),
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("fd00::/x", "fd00::/x"),
    ] {
        let errors = config(&[("LATCHD_TRUSTED_PROXIES", bad)]).unwrap_err();
        assert_eq!(errors.len(), 1, "{bad}");
        assert_eq!(errors[0].var, "LATCHD_TRUSTED_PROXIES");
        assert!(errors[0].problem.contains(names), "{bad}: {}", errors[0]);
    }
}

#[test]
fn a_database_url_names_postgresql_with_its_pool_and_is_never_printed() {
    let url = "postgres://latchd:s3cret@db.internal/latchd";
    if cfg!(feature = "postgres") {
        let c = config(&[("LATCHD_DATABASE_URL", url), ("LATCHD_DATABASE_POOL", "4")]).unwrap();
        let db = c.database.as_ref().expect("a database");
        assert_eq!((db.url.as_str(), db.pool_size), (url, 4));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the URL's password in Debug"
        );
    } else {
        // A build without the backend says how to get one, rather than use the file.
        let errors = config(&[("LATCHD_DATABASE_URL", url)]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].var, "LATCHD_DATABASE_URL");
        assert!(
            errors[0].problem.contains("--features postgres"),
            "{errors:?}"
        );
    }
    // Unset or empty: the redb file.
    assert!(config(&[]).unwrap().database.is_none());
    assert!(config(&[("LATCHD_DATABASE_URL", " ")])
        .unwrap()
        .database
        .is_none());
    for bad in ["0", "1001", "many"] {
        let errors = config(&[("LATCHD_DATABASE_POOL", bad)]).unwrap_err();
        assert_eq!(errors[0].var, "LATCHD_DATABASE_POOL", "{bad}");
    }
}
