//! Configuration: the `LATCHD_*` environment variables of API.md, validated all at once so
//! that a bad start reports every problem, one line each. Knows std and the key format only.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;

use crate::auth::limiter::{
    DEFAULT_ACCOUNT_FAILURES, DEFAULT_ADDRESS_FAILURES_PER_MIN, DEFAULT_ADDRESS_HASHES_PER_MIN,
};
use crate::password::{DEFAULT_ITERATIONS, DEFAULT_MIN_CHARS, MIN_CHARS_FLOOR};
use crate::token::KeySecret;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database path.
pub const DEFAULT_DB: &str = "./latchd.redb";
/// Default access-token lifetime.
pub const DEFAULT_ACCESS_TTL_SECS: i64 = 900;
/// Default sliding lifetime of one refresh token (14 days).
pub const DEFAULT_REFRESH_TTL_SECS: i64 = 1_209_600;
/// Default absolute lifetime of a refresh family (30 days).
pub const DEFAULT_SESSION_MAX_SECS: i64 = 2_592_000;
/// Default clock-skew allowance.
pub const DEFAULT_LEEWAY_SECS: u32 = 5;
/// Default retry grace for the just-rotated refresh token.
pub const DEFAULT_REFRESH_GRACE_SECS: i64 = 10;
/// Default scheduling of the password-hashing threads: nice 10, about a tenth of a core's
/// share against one busy thread. `Idle` protects verification latency better under a login
/// flood but lets hashes starve (logins hang) while anything else keeps the CPUs busy, which
/// a shared host or an edge device does; see `src/http/hashing.rs` for the measurements.
pub const DEFAULT_HASH_PRIORITY: HashPriority = HashPriority::Nice(10);

/// How the password-hashing threads are scheduled against the async workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashPriority {
    /// Linux `SCHED_IDLE`: hashes use only CPU time nothing else wants.
    Idle,
    /// A niceness from 1 to 19 (the default is 10).
    Nice(u8),
    /// Unchanged: hashes compete with the workers as equals.
    Normal,
}
/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on concurrent connections from one client address (IPv6: one /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 128;
/// Default time a connection may go without a request in flight (and a request head may take).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Default time a request body may take to arrive.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;
/// Default cap on one user's live sessions; a new one past it revokes the oldest.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

/// Largest `LATCHD_LOGIN_ACCOUNT_FAILURES`: beyond it the account limit means nothing.
const MAX_LOGIN_ACCOUNT_FAILURES: u32 = 1000;
/// Largest `LATCHD_LOGIN_ADDRESS_PER_MIN`.
const MAX_LOGIN_ADDRESS_PER_MIN: u32 = 1_000_000;

/// Everything `latchd serve` and the CLI need, validated.
#[derive(Debug)]
pub struct Config {
    /// `LATCHD_LISTEN`.
    pub listen: SocketAddr,
    /// `LATCHD_DB`.
    pub db: PathBuf,
    /// `LATCHD_SIGNING_KEY`, if set.
    pub signing_key: Option<KeySecret>,
    /// `LATCHD_ISSUER`.
    pub issuer: String,
    /// `LATCHD_AUDIENCE`.
    pub audience: String,
    /// `LATCHD_CLIENT_ID` (default: the issuer).
    pub client_id: String,
    /// `LATCHD_ACCESS_TTL`, seconds.
    pub access_ttl_secs: i64,
    /// `LATCHD_REFRESH_TTL`, seconds.
    pub refresh_ttl_secs: i64,
    /// `LATCHD_SESSION_MAX`, seconds.
    pub session_max_secs: i64,
    /// `LATCHD_LEEWAY`, seconds.
    pub leeway_secs: u32,
    /// `LATCHD_REFRESH_GRACE`, seconds (0 = off).
    pub refresh_grace_secs: i64,
    /// `LATCHD_PASSWORD_MIN`, characters.
    pub password_min: usize,
    /// `LATCHD_PBKDF2_ITERATIONS`.
    pub pbkdf2_iterations: NonZeroU32,
    /// `LATCHD_LOG`: a tracing filter.
    pub log: String,
    /// `LATCHD_LOG_FORMAT=json`.
    pub log_json: bool,
    /// `LATCHD_COOKIE_SECURE`.
    pub cookie_secure: bool,
    /// `LATCHD_OPEN_REGISTRATION`.
    pub open_registration: bool,
    /// `LATCHD_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpAddr>,
    /// `LATCHD_LOGIN_ACCOUNT_FAILURES`: consecutive failed logins of one account before each
    /// further attempt is delayed (1 s, doubling up to 15 min; a success resets it).
    pub login_account_failures: u32,
    /// `LATCHD_LOGIN_ADDRESS_PER_MIN`: failed logins per minute from one client address.
    pub login_address_per_min: u32,
    /// `LATCHD_METRICS_ALLOW`.
    pub metrics_allow: Vec<IpAddr>,
    /// `LATCHD_MAX_CONNECTIONS`: concurrent connections served; more wait in the backlog.
    pub max_connections: usize,
    /// `LATCHD_MAX_CONNECTIONS_PER_ADDRESS`: concurrent connections of one client address
    /// (IPv6: one /64); trusted proxies are exempt.
    pub max_connections_per_address: usize,
    /// `LATCHD_HEADER_TIMEOUT`, seconds: a connection with no request in flight for this
    /// long is closed, whatever its protocol.
    pub header_timeout_secs: u64,
    /// `LATCHD_BODY_TIMEOUT`, seconds: a request body must arrive whole within this long.
    pub body_timeout_secs: u64,
    /// `LATCHD_HASH_ADDRESS_PER_MIN`: password hashes one client address may cause a minute
    /// (registrations, logins, password changes; successes included).
    pub hash_address_per_min: u32,
    /// `LATCHD_MAX_SESSIONS_PER_USER`: live sessions one user may have.
    pub max_sessions_per_user: usize,
    /// `LATCHD_HASH_CONCURRENCY`: password hashes run at once (default: cores - 1, at least 1).
    pub hash_concurrency: usize,
    /// `LATCHD_HASH_PRIORITY`: scheduling priority of the hashing threads.
    pub hash_priority: HashPriority,
}

/// One configuration problem, naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// Every problem found, not just the first.
    pub fn from_env() -> Result<Self, Vec<ConfigError>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the process environment, with `flags` (pairs of variable name and value, from
    /// command-line flags of the same meaning) taking precedence over it.
    ///
    /// # Errors
    /// Every problem found, not just the first.
    pub fn from_env_and_flags(flags: &[(&str, String)]) -> Result<Self, Vec<ConfigError>> {
        Self::from_lookup(|name| {
            flags
                .iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| value.clone())
                .or_else(|| std::env::var(name).ok())
        })
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// Every problem found, not just the first.
    #[allow(clippy::too_many_lines)] // one statement per variable of API.md, in its order
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        let mut r = Reader {
            lookup: &lookup,
            errors: Vec::new(),
        };
        let listen = r.parse("LATCHD_LISTEN", DEFAULT_LISTEN.parse().ok(), |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected address:port, e.g. 127.0.0.1:8080".to_owned())
        });
        let db = PathBuf::from(r.text("LATCHD_DB").unwrap_or_else(|| DEFAULT_DB.to_owned()));
        let signing_key = r.text("LATCHD_SIGNING_KEY").and_then(|text| {
            KeySecret::from_base64url(text.trim())
                .map_err(|e| r.fail("LATCHD_SIGNING_KEY", e.to_string()))
                .ok()
        });
        let issuer = r.nonempty("LATCHD_ISSUER", "latchd");
        let audience = r.nonempty("LATCHD_AUDIENCE", "latchd");
        let client_id = r.nonempty("LATCHD_CLIENT_ID", &issuer);
        let access_ttl_secs = r.secs("LATCHD_ACCESS_TTL", DEFAULT_ACCESS_TTL_SECS, 1);
        let refresh_ttl_secs = r.secs("LATCHD_REFRESH_TTL", DEFAULT_REFRESH_TTL_SECS, 1);
        let session_max_secs = r.secs("LATCHD_SESSION_MAX", DEFAULT_SESSION_MAX_SECS, 1);
        let leeway_secs = r.parse("LATCHD_LEEWAY", Some(DEFAULT_LEEWAY_SECS), |s| {
            s.parse::<u32>()
                .ok()
                .filter(|&v| v <= 300)
                .ok_or_else(|| "expected whole seconds from 0 to 300".to_owned())
        });
        let refresh_grace_secs = r.secs("LATCHD_REFRESH_GRACE", DEFAULT_REFRESH_GRACE_SECS, 0);
        let password_min = r.parse("LATCHD_PASSWORD_MIN", Some(DEFAULT_MIN_CHARS), |s| {
            s.parse::<usize>()
                .ok()
                .filter(|&v| (MIN_CHARS_FLOOR..=1024).contains(&v))
                .ok_or_else(|| format!("expected a length from {MIN_CHARS_FLOOR} to 1024"))
        });
        let pbkdf2_iterations =
            r.parse("LATCHD_PBKDF2_ITERATIONS", Some(DEFAULT_ITERATIONS), |s| {
                s.parse::<u32>()
                    .ok()
                    .and_then(NonZeroU32::new)
                    .filter(|n| n.get() <= crate::password::MAX_ITERATIONS)
                    .ok_or_else(|| "expected an iteration count from 1 to 10000000".to_owned())
            });
        let log = r.text("LATCHD_LOG").unwrap_or_else(|| "info".to_owned());
        let log_json = r.parse("LATCHD_LOG_FORMAT", Some(false), |s| match s {
            "json" => Ok(true),
            "text" | "" => Ok(false),
            _ => Err("expected json or text".to_owned()),
        });
        let cookie_secure = r.flag("LATCHD_COOKIE_SECURE", true);
        let open_registration = r.flag("LATCHD_OPEN_REGISTRATION", true);
        let trusted_proxies = r.addresses("LATCHD_TRUSTED_PROXIES");
        let login_account_failures = r.count(
            "LATCHD_LOGIN_ACCOUNT_FAILURES",
            DEFAULT_ACCOUNT_FAILURES,
            MAX_LOGIN_ACCOUNT_FAILURES,
        );
        let login_address_per_min = r.count(
            "LATCHD_LOGIN_ADDRESS_PER_MIN",
            DEFAULT_ADDRESS_FAILURES_PER_MIN,
            MAX_LOGIN_ADDRESS_PER_MIN,
        );
        let metrics_allow = r.addresses("LATCHD_METRICS_ALLOW");
        let max_connections = r.parse(
            "LATCHD_MAX_CONNECTIONS",
            Some(DEFAULT_MAX_CONNECTIONS),
            |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| "expected a positive count".to_owned())
            },
        );
        let max_connections_per_address = r.parse(
            "LATCHD_MAX_CONNECTIONS_PER_ADDRESS",
            Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
            |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| "expected a positive count".to_owned())
            },
        );
        let header_timeout_secs = r.timeout("LATCHD_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_SECS);
        let body_timeout_secs = r.timeout("LATCHD_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_SECS);
        let hash_address_per_min = r.count(
            "LATCHD_HASH_ADDRESS_PER_MIN",
            DEFAULT_ADDRESS_HASHES_PER_MIN,
            MAX_LOGIN_ADDRESS_PER_MIN,
        );
        let max_sessions_per_user = r.parse(
            "LATCHD_MAX_SESSIONS_PER_USER",
            Some(DEFAULT_MAX_SESSIONS_PER_USER),
            |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| (1..=100_000).contains(&v))
                    .ok_or_else(|| "expected a count from 1 to 100000".to_owned())
            },
        );
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let hash_concurrency = r.parse(
            "LATCHD_HASH_CONCURRENCY",
            Some(cores.saturating_sub(1).max(1)),
            |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| "expected a positive count".to_owned())
            },
        );
        let hash_priority = r.parse(
            "LATCHD_HASH_PRIORITY",
            Some(DEFAULT_HASH_PRIORITY),
            |s| match s {
                "idle" => Ok(HashPriority::Idle),
                "normal" => Ok(HashPriority::Normal),
                _ => s
                    .parse::<u8>()
                    .ok()
                    .filter(|v| (1..=19).contains(v))
                    .map(HashPriority::Nice)
                    .ok_or_else(|| "expected idle, normal or a niceness from 1 to 19".to_owned()),
            },
        );
        if let (Some(refresh), Some(max)) = (refresh_ttl_secs, session_max_secs) {
            if refresh > max {
                r.fail(
                    "LATCHD_REFRESH_TTL",
                    format!("{refresh} exceeds LATCHD_SESSION_MAX ({max})"),
                );
            }
        }
        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        // Every `None` below would have pushed an error above.
        let missing = || vec![];
        Ok(Self {
            listen: listen.ok_or_else(missing)?,
            db,
            signing_key,
            issuer,
            audience,
            client_id,
            access_ttl_secs: access_ttl_secs.ok_or_else(missing)?,
            refresh_ttl_secs: refresh_ttl_secs.ok_or_else(missing)?,
            session_max_secs: session_max_secs.ok_or_else(missing)?,
            leeway_secs: leeway_secs.ok_or_else(missing)?,
            refresh_grace_secs: refresh_grace_secs.ok_or_else(missing)?,
            password_min: password_min.ok_or_else(missing)?,
            pbkdf2_iterations: pbkdf2_iterations.ok_or_else(missing)?,
            log,
            log_json: log_json.ok_or_else(missing)?,
            cookie_secure: cookie_secure.ok_or_else(missing)?,
            open_registration: open_registration.ok_or_else(missing)?,
            trusted_proxies,
            login_account_failures: login_account_failures.ok_or_else(missing)?,
            login_address_per_min: login_address_per_min.ok_or_else(missing)?,
            metrics_allow,
            max_connections: max_connections.ok_or_else(missing)?,
            max_connections_per_address: max_connections_per_address.ok_or_else(missing)?,
            header_timeout_secs: header_timeout_secs.ok_or_else(missing)?,
            body_timeout_secs: body_timeout_secs.ok_or_else(missing)?,
            hash_address_per_min: hash_address_per_min.ok_or_else(missing)?,
            max_sessions_per_user: max_sessions_per_user.ok_or_else(missing)?,
            hash_concurrency: hash_concurrency.ok_or_else(missing)?,
            hash_priority: hash_priority.ok_or_else(missing)?,
        })
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn fail(&mut self, var: &'static str, problem: String) {
        self.errors.push(ConfigError { var, problem });
    }

    fn text(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
    }

    fn parse<T>(
        &mut self,
        var: &'static str,
        default: Option<T>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.text(var) {
            None => default,
            Some(text) => match parse(text.trim()) {
                Ok(value) => Some(value),
                Err(problem) => {
                    self.fail(var, format!("{problem} (got {text:?})"));
                    None
                }
            },
        }
    }

    fn secs(&mut self, var: &'static str, default: i64, min: i64) -> Option<i64> {
        self.parse(var, Some(default), |s| {
            s.parse::<i64>()
                .ok()
                .filter(|&v| v >= min && v <= 10 * 365 * 86_400)
                .ok_or_else(|| format!("expected whole seconds, at least {min}"))
        })
    }

    fn timeout(&mut self, var: &'static str, default: u64) -> Option<u64> {
        self.parse(var, Some(default), |s| {
            s.parse::<u64>()
                .ok()
                .filter(|v| (1..=300).contains(v))
                .ok_or_else(|| "expected whole seconds from 1 to 300".to_owned())
        })
    }

    fn count(&mut self, var: &'static str, default: u32, max: u32) -> Option<u32> {
        self.parse(var, Some(default), |s| {
            s.parse::<u32>()
                .ok()
                .filter(|&v| (1..=max).contains(&v))
                .ok_or_else(|| format!("expected a count from 1 to {max}"))
        })
    }

    fn flag(&mut self, var: &'static str, default: bool) -> Option<bool> {
        self.parse(var, Some(default), |s| match s {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    fn nonempty(&mut self, var: &'static str, default: &str) -> String {
        match self.text(var) {
            Some(text) if text.trim().is_empty() => {
                self.fail(var, "must not be empty".to_owned());
                String::new()
            }
            Some(text) => text.trim().to_owned(),
            None => default.to_owned(),
        }
    }

    fn addresses(&mut self, var: &'static str) -> Vec<IpAddr> {
        self.parse(var, Some(Vec::new()), |s| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| format!("{a:?} is not an IP address"))
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
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
        assert!(c.signing_key.is_none());
        assert_eq!(
            (c.issuer.as_str(), c.audience.as_str()),
            ("latchd", "latchd")
        );
        assert_eq!(c.client_id, "latchd");
        assert_eq!(c.access_ttl_secs, 900);
        assert_eq!(c.refresh_ttl_secs, 1_209_600);
        assert_eq!(c.session_max_secs, 2_592_000);
        assert_eq!(c.leeway_secs, 5);
        assert_eq!(c.refresh_grace_secs, 10);
        assert_eq!(c.password_min, 15);
        assert_eq!(c.pbkdf2_iterations.get(), 600_000);
        assert!(c.cookie_secure && c.open_registration && !c.log_json);
        assert!(c.hash_concurrency >= 1);
        assert_eq!(c.hash_priority, HashPriority::Nice(10));
        assert_eq!((c.login_account_failures, c.login_address_per_min), (5, 20));
    }

    #[test]
    fn login_limits_are_positive_counts() {
        let c = config(&[
            ("LATCHD_LOGIN_ACCOUNT_FAILURES", "3"),
            ("LATCHD_LOGIN_ADDRESS_PER_MIN", "100"),
        ])
        .unwrap();
        assert_eq!(
            (c.login_account_failures, c.login_address_per_min),
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
        assert_eq!(c.client_id, "https://auth.example");
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
            assert_eq!(c.hash_priority, want, "{text}");
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
}
