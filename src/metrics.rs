//! Counters and a latency histogram, rendered in the Prometheus text exposition format 0.0.4.
//!
//! Lock-free (`AtomicU64`, relaxed), allocated once at start. Every label value comes from a
//! fixed list in this file, never from a request, so the number of series is bounded and a
//! client cannot make a path, an email or a token appear in the output. No HTTP types here:
//! the HTTP layer maps its routes to [`Route`] and asks [`metrics_allowed`] who may scrape.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{AccessDenied, Counts};
use crate::token::TokenError;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a login attempt ended (`latchd_logins_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A session was opened.
    Ok,
    /// Unknown email, wrong password or disabled user.
    Failed,
    /// Refused by the login rate limiter before the password was checked.
    RateLimited,
}

/// What became of a presented refresh token (`latchd_refreshes_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the successor is now the family's current token.
    Rotated,
    /// The just-superseded token inside the grace: the same successor was handed out again.
    Retried,
    /// A superseded token outside the grace: the whole family was revoked (RFC 9700 §4.14.2).
    Reused,
    /// The token or its family's absolute lifetime had expired.
    Expired,
    /// The family had been revoked earlier.
    Revoked,
    /// No such family, or not one of its generations.
    Unknown,
    /// Not a refresh token at all (bad format or MAC): never reached the store.
    Invalid,
}

/// The route a request was for (`latchd_request_duration_seconds{route}`): the router's
/// fixed paths, with ids replaced by `{id}`; anything else is [`Route::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`.
    Healthz,
    /// `/metrics`.
    Metrics,
    /// `/v1/admin/users`.
    AdminUsers,
    /// `/v1/admin/users/{id}`.
    AdminUser,
    /// `/v1/admin/users/{id}/revoke`.
    AdminUserRevoke,
    /// `/v1/auth/login`.
    Login,
    /// `/v1/auth/logout`.
    Logout,
    /// `/v1/auth/logout-all`.
    LogoutAll,
    /// `/v1/auth/me`.
    Me,
    /// `/v1/auth/refresh`.
    Refresh,
    /// `/v1/auth/verify`.
    Verify,
    /// `/v1/users`.
    Users,
    /// `/v1/users/me/password`.
    Password,
    /// Any path the router does not know; its raw text is never a label.
    Other,
}

impl Route {
    /// Every route, in the order of their labels.
    pub const ALL: [Route; 14] = [
        Route::Healthz,
        Route::Metrics,
        Route::AdminUsers,
        Route::AdminUser,
        Route::AdminUserRevoke,
        Route::Login,
        Route::Logout,
        Route::LogoutAll,
        Route::Me,
        Route::Refresh,
        Route::Verify,
        Route::Users,
        Route::Password,
        Route::Other,
    ];

    /// The `route` label value.
    pub fn label(self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Metrics => "/metrics",
            Route::AdminUsers => "/v1/admin/users",
            Route::AdminUser => "/v1/admin/users/{id}",
            Route::AdminUserRevoke => "/v1/admin/users/{id}/revoke",
            Route::Login => "/v1/auth/login",
            Route::Logout => "/v1/auth/logout",
            Route::LogoutAll => "/v1/auth/logout-all",
            Route::Me => "/v1/auth/me",
            Route::Refresh => "/v1/auth/refresh",
            Route::Verify => "/v1/auth/verify",
            Route::Users => "/v1/users",
            Route::Password => "/v1/users/me/password",
            Route::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Whether `peer` may read `/metrics`: loopback (an IPv4-mapped IPv6 loopback too), or an
/// address listed in `LATCHD_METRICS_ALLOW`.
pub fn metrics_allowed(peer: IpAddr, allow: &[IpAddr]) -> bool {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; compare them as IPv4.
    let peer = peer.to_canonical();
    peer.is_loopback() || allow.iter().any(|a| a.to_canonical() == peer)
}

/// The server's counters and latency histogram.
pub struct Metrics {
    logins: [AtomicU64; LOGIN_OUTCOMES.len()],
    refreshes: [AtomicU64; REFRESH_OUTCOMES.len()],
    verified: AtomicU64,
    rejected: [AtomicU64; REJECT_REASONS.len()],
    registrations: AtomicU64,
    requests: [Histogram; Route::ALL.len()],
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            logins: std::array::from_fn(|_| AtomicU64::new(0)),
            refreshes: std::array::from_fn(|_| AtomicU64::new(0)),
            verified: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            registrations: AtomicU64::new(0),
            requests: std::array::from_fn(|_| Histogram::new()),
        }
    }

    /// Counts one login attempt.
    pub fn record_login(&self, outcome: LoginOutcome) {
        let i = match outcome {
            LoginOutcome::Ok => 0,
            LoginOutcome::Failed => 1,
            LoginOutcome::RateLimited => 2,
        };
        bump(&self.logins[i]);
    }

    /// Counts one presented refresh token.
    pub fn record_refresh(&self, outcome: RefreshOutcome) {
        let i = match outcome {
            RefreshOutcome::Rotated => 0,
            RefreshOutcome::Retried => 1,
            RefreshOutcome::Reused => 2,
            RefreshOutcome::Expired => 3,
            RefreshOutcome::Revoked => 4,
            RefreshOutcome::Unknown => 5,
            RefreshOutcome::Invalid => 6,
        };
        bump(&self.refreshes[i]);
    }

    /// Counts one access token that verified.
    pub fn record_verified(&self) {
        bump(&self.verified);
    }

    /// Counts one access token refused by a token rule.
    pub fn record_token_rejected(&self, err: TokenError) {
        self.record_rejected(err.reason());
    }

    /// Counts one genuine access token refused by its state (logout, revocation, user gone).
    pub fn record_access_denied(&self, denied: AccessDenied) {
        self.record_rejected(denied_reason(denied));
    }

    /// Counts one registered user.
    pub fn record_registration(&self) {
        bump(&self.registrations);
    }

    /// Records how long a request for `route` took.
    pub fn observe_request(&self, route: Route, elapsed: Duration) {
        self.requests[route.index()].observe(elapsed);
    }

    /// The text exposition format 0.0.4: each family with `# HELP` and `# TYPE`, families in
    /// name order, samples in a fixed order, ending with a newline. `counts` feeds the gauges.
    pub fn render(&self, counts: Counts) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail; the Result is only fmt::Write's signature.
        let _ = self.write_to(&mut out, counts);
        out
    }

    fn record_rejected(&self, reason: &str) {
        let i = REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REJECT_REASONS.len() - 1);
        bump(&self.rejected[i]);
    }

    fn write_to(&self, out: &mut String, counts: Counts) -> fmt::Result {
        family(
            out,
            "latchd_blacklist_rows",
            "gauge",
            "Access-token ids on the blacklist (logged out, not yet expired).",
        )?;
        writeln!(out, "latchd_blacklist_rows {}", counts.blacklist)?;

        family(
            out,
            "latchd_families_live",
            "gauge",
            "Refresh families (sessions) that are stored and not revoked.",
        )?;
        writeln!(out, "latchd_families_live {}", counts.families)?;

        family(
            out,
            "latchd_logins_total",
            "counter",
            "Login attempts by outcome.",
        )?;
        for (outcome, n) in LOGIN_OUTCOMES.iter().zip(&self.logins) {
            writeln!(
                out,
                "latchd_logins_total{{outcome=\"{outcome}\"}} {}",
                load(n)
            )?;
        }

        family(
            out,
            "latchd_refreshes_total",
            "counter",
            "Presented refresh tokens by outcome.",
        )?;
        for (outcome, n) in REFRESH_OUTCOMES.iter().zip(&self.refreshes) {
            writeln!(
                out,
                "latchd_refreshes_total{{outcome=\"{outcome}\"}} {}",
                load(n)
            )?;
        }

        family(
            out,
            "latchd_registrations_total",
            "counter",
            "Users registered through POST /v1/users.",
        )?;
        writeln!(
            out,
            "latchd_registrations_total {}",
            load(&self.registrations)
        )?;

        family(
            out,
            "latchd_request_duration_seconds",
            "histogram",
            "Time from request head to response, by route.",
        )?;
        for route in Route::ALL {
            self.requests[route.index()].write_to(out, route.label())?;
        }

        family(out, "latchd_users", "gauge", "Registered users.")?;
        writeln!(out, "latchd_users {}", counts.users)?;

        family(
            out,
            "latchd_verifications_total",
            "counter",
            "Access-token verifications by result, and by reason when rejected.",
        )?;
        writeln!(
            out,
            "latchd_verifications_total{{result=\"ok\"}} {}",
            load(&self.verified)
        )?;
        for (reason, n) in REJECT_REASONS.iter().zip(&self.rejected) {
            writeln!(
                out,
                "latchd_verifications_total{{result=\"rejected\",reason=\"{reason}\"}} {}",
                load(n)
            )?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One route's latency histogram. Buckets are stored non-cumulative (one increment per
/// observation) and summed at render, so `+Inf` always equals `_count` in one scrape.
struct Histogram {
    /// One per bound of `BUCKETS`, then the overflow above the largest bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|(_, bound)| nanos <= *bound)
            .unwrap_or(BUCKETS.len());
        bump(&self.buckets[i]);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn write_to(&self, out: &mut String, route: &str) -> fmt::Result {
        let name = "latchd_request_duration_seconds";
        let mut cumulative = 0u64;
        for ((le, _), n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative = cumulative.saturating_add(load(n));
            writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            )?;
        }
        cumulative = cumulative.saturating_add(load(&self.buckets[BUCKETS.len()]));
        writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
        )?;
        // Whole nanoseconds as exact decimal seconds: no float rounding, no lossy cast.
        let sum = load(&self.sum_nanos);
        writeln!(
            out,
            "{name}_sum{{route=\"{route}\"}} {}.{:09}",
            sum / NANOS_PER_SEC,
            sum % NANOS_PER_SEC
        )?;
        writeln!(out, "{name}_count{{route=\"{route}\"}} {cumulative}")
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

fn bump(counter: &AtomicU64) {
    // Relaxed: each counter is independent and only ever read for a scrape.
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The label of a state refusal, beside [`TokenError::reason`]'s labels.
fn denied_reason(denied: AccessDenied) -> &'static str {
    match denied {
        AccessDenied::Blacklisted => "blacklisted",
        AccessDenied::StaleVersion => "stale_version",
        AccessDenied::UnknownUser => "unknown_user",
        AccessDenied::UserDisabled => "user_disabled",
        AccessDenied::FamilyRevoked => "family_revoked",
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Labels of `latchd_logins_total`, in the index order of `Metrics::record_login`.
const LOGIN_OUTCOMES: [&str; 3] = ["ok", "failed", "rate_limited"];

/// Labels of `latchd_refreshes_total`, in the index order of `Metrics::record_refresh`.
const REFRESH_OUTCOMES: [&str; 7] = [
    "rotated", "retried", "reused", "expired", "revoked", "unknown", "invalid",
];

/// Every `reason` of a rejected verification: [`TokenError::reason`]'s labels, then the
/// [`AccessDenied`] states, then `other` for a reason this list does not know yet (a new
/// `TokenError` variant; the unit tests make that a test failure).
const REJECT_REASONS: [&str; 25] = [
    "too_long",
    "segments",
    "base64",
    "not_json_object",
    "duplicate_member",
    "alg",
    "typ",
    "kid",
    "crit",
    "embedded_key",
    "signature",
    "missing_claim",
    "not_integer",
    "bad_claim",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "issuer",
    "audience",
    "blacklisted",
    "stale_version",
    "unknown_user",
    "user_disabled",
    "family_revoked",
    "other",
];

/// Upper bounds of the latency buckets: the `le` label, and the same bound in nanoseconds.
const BUCKETS: [(&str, u64); 14] = [
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

#[cfg(test)]
mod tests;
