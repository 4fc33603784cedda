//! Configuration: the `LATCHD_*` variables (and the flags of the same meaning) turned into one
//! settings value per layer, validated all at once so that a bad start reports every problem,
//! one line each.
//!
//! [`VARS`] is the one list of variables: the flags and `--help` are built from it, the
//! parser reads exactly these names, and a test holds README's configuration table to it.
//! Only `main` and the CLI import this module; the layers below get their `Settings`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::hashing::HashPriority;
use crate::auth::limiter::LimitPolicy;
use crate::http::{AddressRange, CorsOrigins, PublicUrl, Site, TrustedProxies};
use crate::model::SessionPolicy;
use crate::password::{MAX_ITERATIONS, MIN_CHARS_FLOOR};
use crate::token::KeySecret;

/// One configuration variable.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    /// The environment variable, e.g. `LATCHD_ACCESS_TTL`.
    pub name: &'static str,
    /// The flag of the same meaning, without dashes (`access-ttl`), if it has one.
    pub flag: Option<&'static str>,
    /// The default, as `--help` and README show it: a value the parser takes
    /// ([`Shown::Value`]), or a description of a computed one.
    pub default: Shown,
    /// What it means, in one line.
    pub help: &'static str,
}

/// A variable's default, as shown.
#[derive(Clone, Copy, Debug)]
pub enum Shown {
    /// This text, parsed like a given value (a test checks that it gives the default).
    Value(&'static str),
    /// Computed or absent; the text says what it is.
    Described(&'static str),
}

impl Shown {
    /// The text shown for the default.
    pub fn text(self) -> &'static str {
        match self {
            Self::Value(text) | Self::Described(text) => text,
        }
    }
}

const fn var(name: &'static str, flag: &'static str, default: Shown, help: &'static str) -> Var {
    Var {
        name,
        flag: Some(flag),
        default,
        help,
    }
}

use self::Shown::{Described, Value};

/// Every variable latchd reads, in the order README lists them.
pub const VARS: &[Var] = &[
    var(
        "LATCHD_LISTEN",
        "listen",
        Value("127.0.0.1:8080"),
        "address:port `serve` listens on",
    ),
    var(
        "LATCHD_DB",
        "db",
        Value("./latchd.redb"),
        "path of the redb file",
    ),
    var(
        "LATCHD_CACHE_MB",
        "cache-mb",
        Value("8"),
        "MiB of the redb file redb may keep cached in memory",
    ),
    Var {
        name: "LATCHD_DATABASE_URL",
        // No flag: the URL may carry the database password.
        flag: None,
        default: Described("unset: the redb file"),
        help: "postgres:// URL of a PostgreSQL database shared by several nodes (feature postgres)",
    },
    var(
        "LATCHD_DATABASE_POOL",
        "database-pool",
        Value("16"),
        "most PostgreSQL connections a node opens for requests",
    ),
    Var {
        name: "LATCHD_SIGNING_KEY",
        // No flag: a key on the command line would be readable by every local user.
        flag: None,
        default: Described("generated"),
        help: "base64url HS256 key (>= 32 bytes) that signs instead of the stored keys",
    },
    var(
        "LATCHD_ISSUER",
        "issuer",
        Value("latchd"),
        "`iss` to put and demand",
    ),
    var(
        "LATCHD_AUDIENCE",
        "audience",
        Value("latchd"),
        "`aud` to put and demand",
    ),
    var(
        "LATCHD_CLIENT_ID",
        "client-id",
        Described("the issuer"),
        "`client_id` claim of access tokens",
    ),
    var(
        "LATCHD_ACCESS_TTL",
        "access-ttl",
        Value("900"),
        "access-token lifetime, seconds",
    ),
    var(
        "LATCHD_REFRESH_TTL",
        "refresh-ttl",
        Value("1209600"),
        "sliding lifetime of one refresh token, seconds",
    ),
    var(
        "LATCHD_SESSION_MAX",
        "session-max",
        Value("2592000"),
        "absolute lifetime of a session, seconds",
    ),
    var(
        "LATCHD_SESSION_IDLE",
        "session-idle",
        Value("86400"),
        "seconds a browser session stays valid without use",
    ),
    var(
        "LATCHD_AUDIT_RETENTION",
        "audit-retention",
        Value("7776000"),
        "seconds audit rows are kept before the sweep deletes them",
    ),
    var(
        "LATCHD_LEEWAY",
        "leeway",
        Value("5"),
        "clock skew allowed on exp/nbf/iat, seconds",
    ),
    var(
        "LATCHD_REFRESH_GRACE",
        "refresh-grace",
        Value("10"),
        "seconds a just-rotated refresh token counts as a retry",
    ),
    var(
        "LATCHD_PASSWORD_MIN",
        "password-min",
        Value("15"),
        "minimum password length, characters",
    ),
    var(
        "LATCHD_PBKDF2_ITERATIONS",
        "pbkdf2-iterations",
        Value("600000"),
        "PBKDF2 work factor for new hashes",
    ),
    var("LATCHD_LOG", "log", Value("info"), "tracing filter"),
    var(
        "LATCHD_LOG_FORMAT",
        "log-format",
        Value("text"),
        "`json` or `text`",
    ),
    var(
        "LATCHD_COOKIE_SECURE",
        "cookie-secure",
        Value("true"),
        "`false` drops Secure from cookies (plain-http development only)",
    ),
    var(
        "LATCHD_PUBLIC_URL",
        "public-url",
        Described("none"),
        "external origin of latchd's pages, e.g. https://auth.example.com",
    ),
    var(
        "LATCHD_COOKIE_DOMAIN",
        "cookie-domain",
        Described("the public host"),
        "domain the browser session cookie is set for",
    ),
    var(
        "LATCHD_CORS_ORIGINS",
        "cors-origins",
        Described("none"),
        "origins (scheme://host[:port]) whose pages may call the API, cookies included",
    ),
    var(
        "LATCHD_OPEN_REGISTRATION",
        "open-registration",
        Value("true"),
        "`false` makes registration admin-only",
    ),
    var(
        "LATCHD_TRUSTED_PROXIES",
        "trusted-proxies",
        Described("none"),
        "proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed",
    ),
    var(
        "LATCHD_LOGIN_ACCOUNT_FAILURES",
        "login-account-failures",
        Value("5"),
        "failed logins of one account before delays start",
    ),
    var(
        "LATCHD_LOGIN_ADDRESS_PER_MIN",
        "login-address-per-min",
        Value("20"),
        "failed logins per minute from one address",
    ),
    var(
        "LATCHD_HASH_ADDRESS_PER_MIN",
        "hash-address-per-min",
        Value("30"),
        "password hashes one address may cause per minute",
    ),
    var(
        "LATCHD_MAX_SESSIONS_PER_USER",
        "max-sessions-per-user",
        Value("100"),
        "live sessions one user may have",
    ),
    var(
        "LATCHD_METRICS_ALLOW",
        "metrics-allow",
        Described("none"),
        "clients besides loopback that may read /metrics",
    ),
    var(
        "LATCHD_MAX_CONNECTIONS",
        "max-connections",
        Value("4096"),
        "concurrent connections served",
    ),
    var(
        "LATCHD_MAX_CONNECTIONS_PER_ADDRESS",
        "max-connections-per-address",
        Value("128"),
        "concurrent connections of one client address",
    ),
    var(
        "LATCHD_HEADER_TIMEOUT",
        "header-timeout",
        Value("10"),
        "seconds a connection may go without a request",
    ),
    var(
        "LATCHD_BODY_TIMEOUT",
        "body-timeout",
        Value("10"),
        "seconds a request body may take to arrive",
    ),
    var(
        "LATCHD_HASH_CONCURRENCY",
        "hash-concurrency",
        Described("cores − 1 (≥ 1)"),
        "password hashes computed at once",
    ),
    var(
        "LATCHD_HASH_PRIORITY",
        "hash-priority",
        Value("10"),
        "hashing threads' priority: idle, normal or a niceness 1-19",
    ),
];

/// Everything `latchd serve` and the CLI need, validated and split by layer.
#[derive(Debug)]
pub struct Config {
    /// `LATCHD_LISTEN`.
    pub listen: SocketAddr,
    /// `LATCHD_DB`.
    pub db: PathBuf,
    /// How the redb file is opened (`LATCHD_CACHE_MB`).
    pub store: crate::store::Settings,
    /// The PostgreSQL database instead of the redb file (`LATCHD_DATABASE_URL`,
    /// `LATCHD_DATABASE_POOL`).
    pub database: Option<Database>,
    /// `LATCHD_LOG`: a tracing filter.
    pub log: String,
    /// `LATCHD_LOG_FORMAT=json`.
    pub log_json: bool,
    /// The use cases' settings.
    pub auth: crate::auth::Settings,
    /// The HTTP server's settings.
    pub http: crate::http::Settings,
}

/// A PostgreSQL database to keep the state in.
#[derive(Clone, PartialEq, Eq)]
pub struct Database {
    /// `LATCHD_DATABASE_URL`.
    pub url: String,
    /// `LATCHD_DATABASE_POOL`.
    pub pool_size: usize,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("Database")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .finish()
    }
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
    #[allow(clippy::too_many_lines)] // one statement per variable of VARS, in its order
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        let mut r = Reader {
            lookup: &lookup,
            errors: Vec::new(),
        };
        let listen = r.parse("LATCHD_LISTEN", |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected address:port, e.g. 127.0.0.1:8080".to_owned())
        });
        let db = r.parse("LATCHD_DB", |s| Ok(PathBuf::from(s)));
        let cache_bytes = r.parse("LATCHD_CACHE_MB", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|v| (1..=MAX_CACHE_MB).contains(v))
                .and_then(|v| v.checked_mul(1 << 20))
                .ok_or_else(|| format!("expected whole MiB from 1 to {MAX_CACHE_MB}"))
        });
        let database_url = r
            .text("LATCHD_DATABASE_URL")
            .filter(|u| !u.trim().is_empty());
        if database_url.is_some() && !cfg!(feature = "postgres") {
            r.fail(
                "LATCHD_DATABASE_URL",
                "this latchd was built without PostgreSQL; build it with `--features postgres`"
                    .to_owned(),
            );
        }
        let database_pool = r.positive("LATCHD_DATABASE_POOL", 1_000);
        let signing_key = r.text("LATCHD_SIGNING_KEY").and_then(|text| {
            KeySecret::from_base64url(text.trim())
                .map_err(|e| r.fail("LATCHD_SIGNING_KEY", e.to_string()))
                .ok()
        });
        let issuer = r.nonempty("LATCHD_ISSUER");
        let audience = r.nonempty("LATCHD_AUDIENCE");
        let client_id = match r.text("LATCHD_CLIENT_ID") {
            None => issuer.clone(),
            Some(_) => r.nonempty("LATCHD_CLIENT_ID"),
        };
        let access_ttl_secs = r.secs("LATCHD_ACCESS_TTL", 1);
        let refresh_ttl_secs = r.secs("LATCHD_REFRESH_TTL", 1);
        let session_max_secs = r.secs("LATCHD_SESSION_MAX", 1);
        let session_idle_secs = r.secs("LATCHD_SESSION_IDLE", 1);
        let audit_retention_secs = r.secs("LATCHD_AUDIT_RETENTION", 1);
        let leeway_secs = r.parse("LATCHD_LEEWAY", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|&v| v <= 300)
                .ok_or_else(|| "expected whole seconds from 0 to 300".to_owned())
        });
        let refresh_grace_secs = r.secs("LATCHD_REFRESH_GRACE", 0);
        let password_min = r.parse("LATCHD_PASSWORD_MIN", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|&v| (MIN_CHARS_FLOOR..=1024).contains(&v))
                .ok_or_else(|| format!("expected a length from {MIN_CHARS_FLOOR} to 1024"))
        });
        let pbkdf2_iterations = r.parse("LATCHD_PBKDF2_ITERATIONS", |s| {
            s.parse::<u32>()
                .ok()
                .and_then(NonZeroU32::new)
                .filter(|n| n.get() <= MAX_ITERATIONS)
                .ok_or_else(|| "expected an iteration count from 1 to 10000000".to_owned())
        });
        let log = r.parse("LATCHD_LOG", log_filter);
        let log_json = r.parse("LATCHD_LOG_FORMAT", |s| match s {
            "json" => Ok(true),
            "text" | "" => Ok(false),
            _ => Err("expected json or text".to_owned()),
        });
        let cookie_secure = r.flag("LATCHD_COOKIE_SECURE");
        let public_url = match r.text("LATCHD_PUBLIC_URL") {
            None => None,
            Some(text) => PublicUrl::parse(&text)
                .map_err(|e| r.fail("LATCHD_PUBLIC_URL", format!("{e} (got {text:?})")))
                .ok(),
        };
        let cookie_domain = r.text("LATCHD_COOKIE_DOMAIN");
        let site = Site::new(
            public_url,
            cookie_domain.as_deref(),
            cookie_secure.unwrap_or(true),
        )
        .map_err(|e| r.fail("LATCHD_COOKIE_DOMAIN", e))
        .ok();
        let cors_origins = r.parse("LATCHD_CORS_ORIGINS", |s| {
            CorsOrigins::parse(s).map_err(|(entry, e)| format!("{entry:?}: {e}"))
        });
        let open_registration = r.flag("LATCHD_OPEN_REGISTRATION");
        let trusted_proxies = r.ranges("LATCHD_TRUSTED_PROXIES");
        let account_failures = r.count("LATCHD_LOGIN_ACCOUNT_FAILURES", 1000);
        let address_failures_per_min = r.count("LATCHD_LOGIN_ADDRESS_PER_MIN", 1_000_000);
        let address_hashes_per_min = r.count("LATCHD_HASH_ADDRESS_PER_MIN", 1_000_000);
        let max_sessions_per_user = r.positive("LATCHD_MAX_SESSIONS_PER_USER", 100_000);
        let metrics_allow = r.addresses("LATCHD_METRICS_ALLOW");
        let max_connections = r.positive("LATCHD_MAX_CONNECTIONS", usize::MAX);
        let max_per_address = r.positive("LATCHD_MAX_CONNECTIONS_PER_ADDRESS", usize::MAX);
        let header_timeout = r.timeout("LATCHD_HEADER_TIMEOUT");
        let body_timeout = r.timeout("LATCHD_BODY_TIMEOUT");
        let hash_threads = match r.text("LATCHD_HASH_CONCURRENCY") {
            None => Some(crate::auth::hashing::default_threads()),
            Some(_) => r.positive("LATCHD_HASH_CONCURRENCY", 1024),
        };
        let hash_priority = r.parse("LATCHD_HASH_PRIORITY", |s| match s {
            "idle" => Ok(HashPriority::Idle),
            "normal" => Ok(HashPriority::Normal),
            _ => s
                .parse::<u8>()
                .ok()
                .filter(|v| (1..=19).contains(v))
                .map(HashPriority::Nice)
                .ok_or_else(|| "expected idle, normal or a niceness from 1 to 19".to_owned()),
        });
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
        let missing = Vec::new;
        let refresh_ttl_secs = refresh_ttl_secs.ok_or_else(missing)?;
        let auth = crate::auth::Settings {
            audit_retention_secs: audit_retention_secs.ok_or_else(missing)?,
            issuer,
            audience,
            client_id,
            leeway_secs: leeway_secs.ok_or_else(missing)?,
            access_ttl_secs: access_ttl_secs.ok_or_else(missing)?,
            session: SessionPolicy {
                refresh_ttl_secs,
                session_max_secs: session_max_secs.ok_or_else(missing)?,
                grace_secs: refresh_grace_secs.ok_or_else(missing)?,
                max_per_user: max_sessions_per_user.ok_or_else(missing)?,
                // Capped by the absolute lifetime (API.md).
                idle_secs: session_idle_secs
                    .ok_or_else(missing)?
                    .min(session_max_secs.ok_or_else(missing)?),
            },
            password_min: password_min.ok_or_else(missing)?,
            pbkdf2_iterations: pbkdf2_iterations.ok_or_else(missing)?,
            limits: LimitPolicy {
                account_failures: account_failures.ok_or_else(missing)?,
                address_failures_per_min: address_failures_per_min.ok_or_else(missing)?,
                address_hashes_per_min: address_hashes_per_min.ok_or_else(missing)?,
                ..LimitPolicy::default()
            },
            hash_threads: hash_threads.ok_or_else(missing)?,
            hash_priority: hash_priority.ok_or_else(missing)?,
            open_registration: open_registration.ok_or_else(missing)?,
            signing_key,
        };
        let http = crate::http::Settings {
            max_connections: max_connections.ok_or_else(missing)?,
            max_per_address: max_per_address.ok_or_else(missing)?,
            header_timeout: header_timeout.ok_or_else(missing)?,
            body_timeout: body_timeout.ok_or_else(missing)?,
            cookie_secure: cookie_secure.ok_or_else(missing)?,
            site: site.ok_or_else(missing)?,
            refresh_cookie_max_age_secs: refresh_ttl_secs,
            session_max_secs: auth.session.session_max_secs,
            cors_origins: cors_origins.ok_or_else(missing)?,
            trusted_proxies,
            metrics_allow,
        };
        Ok(Self {
            listen: listen.ok_or_else(missing)?,
            db: db.ok_or_else(missing)?,
            store: crate::store::Settings {
                cache_bytes: cache_bytes.ok_or_else(missing)?,
            },
            database: match database_url {
                Some(url) => Some(Database {
                    url: url.trim().to_owned(),
                    pool_size: database_pool.ok_or_else(missing)?,
                }),
                None => None,
            },
            log: log.ok_or_else(missing)?,
            log_json: log_json.ok_or_else(missing)?,
            auth,
            http,
        })
    }
}

/// The largest `LATCHD_CACHE_MB`: 64 GiB, far past any file latchd is meant for.
const MAX_CACHE_MB: usize = 65_536;

/// The targets latchd's log lines carry: the crate, each of its top-level modules (an event's
/// target is its module path), the access log, and h2, the one dependency that logs through
/// `tracing` (HTTP/2 frames at debug; its internal steps at trace, a level release builds leave
/// out: see `Cargo.toml`). A `LATCHD_LOG` target must be one of these
/// or a path below one but the crate itself (`latchd::http::server`).
pub const LOG_TARGETS: &[&str] = &[
    "latchd",
    "latchd::access",
    "latchd::auth",
    "latchd::cli",
    "latchd::config",
    "latchd::conformance",
    "latchd::control",
    "latchd::fuzzing",
    "latchd::http",
    "latchd::metrics",
    "latchd::model",
    "latchd::password",
    "latchd::runtime",
    "latchd::serve",
    "latchd::store",
    "latchd::telemetry",
    "latchd::time",
    "latchd::token",
    "h2",
];

const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `LATCHD_LOG` filter: comma-separated directives, each a level, a known target,
/// or `target=level`; returns it without the blanks around its parts. The filter itself would
/// take any word as a target and, with no level given for everything else, silence every line
/// (`verbose`): refused here instead.
fn log_filter(text: &str) -> Result<String, String> {
    let level = |l: &str| LOG_LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l));
    // Below `latchd` only its modules: `latchd::acces` is a typo, not a target.
    let target = |t: &str| {
        LOG_TARGETS.iter().any(|k| {
            t.strip_prefix(k)
                .is_some_and(|rest| rest.is_empty() || (*k != "latchd" && rest.starts_with("::")))
        })
    };
    if text.is_empty() {
        return Err("expected a level or target=level pairs, e.g. info".to_owned());
    }
    let mut clean = Vec::new();
    for directive in text.split(',').map(str::trim) {
        let known = if let Some((t, l)) = directive.split_once('=') {
            clean.push(format!("{}={}", t.trim(), l.trim()));
            target(t.trim()) && level(l.trim())
        } else {
            clean.push(directive.to_owned());
            level(directive) || target(directive)
        };
        if !known {
            return Err(format!(
                "{directive:?} is not a level ({}), a latchd target (latchd::<module>, \
                 latchd::access, h2) or target=level",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(clean.join(","))
}

/// The variable named `name` in [`VARS`].
///
/// # Panics
/// If `name` is not in the list: a typo in this file, caught by every test that parses.
fn var_named(name: &str) -> &'static Var {
    VARS.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in config::VARS"))
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
        (self.lookup)(var_named(var).name)
    }

    /// The value of `var`, or its listed default when unset, through `parse`.
    fn parse<T>(
        &mut self,
        var: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = match (self.text(var), var_named(var).default) {
            (Some(text), _) => text,
            (None, Shown::Value(text)) => text.to_owned(),
            (None, Shown::Described(_)) => String::new(),
        };
        match parse(text.trim()) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.fail(var, format!("{problem} (got {text:?})"));
                None
            }
        }
    }

    fn secs(&mut self, var: &'static str, min: i64) -> Option<i64> {
        self.parse(var, |s| {
            s.parse::<i64>()
                .ok()
                .filter(|&v| v >= min && v <= 10 * 365 * 86_400)
                .ok_or_else(|| format!("expected whole seconds, at least {min}"))
        })
    }

    fn timeout(&mut self, var: &'static str) -> Option<Duration> {
        self.parse(var, |s| {
            s.parse::<u64>()
                .ok()
                .filter(|v| (1..=300).contains(v))
                .map(Duration::from_secs)
                .ok_or_else(|| "expected whole seconds from 1 to 300".to_owned())
        })
    }

    fn count(&mut self, var: &'static str, max: u32) -> Option<u32> {
        self.parse(var, |s| {
            s.parse::<u32>()
                .ok()
                .filter(|&v| (1..=max).contains(&v))
                .ok_or_else(|| format!("expected a count from 1 to {max}"))
        })
    }

    fn positive(&mut self, var: &'static str, max: usize) -> Option<usize> {
        self.parse(var, |s| {
            s.parse::<usize>()
                .ok()
                .filter(|&v| (1..=max).contains(&v))
                .ok_or_else(|| "expected a positive count".to_owned())
        })
    }

    fn flag(&mut self, var: &'static str) -> Option<bool> {
        self.parse(var, |s| match s {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    fn nonempty(&mut self, var: &'static str) -> String {
        self.parse(var, |s| {
            if s.is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(s.to_owned())
            }
        })
        .unwrap_or_default()
    }

    /// Comma-separated addresses or CIDR ranges.
    fn ranges(&mut self, var: &'static str) -> TrustedProxies {
        self.parse(var, |s| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| AddressRange::parse(a).map_err(|e| format!("{a:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
                .map(TrustedProxies::new)
        })
        .unwrap_or_default()
    }

    fn addresses(&mut self, var: &'static str) -> Vec<IpAddr> {
        self.parse(var, |s| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| format!("{a:?} is not an IP address"))
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
