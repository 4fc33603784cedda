//! Counters and latency histograms, rendered in the Prometheus text exposition format 0.0.4.
//!
//! [`Metrics`] is a subscriber of auth's events: the use cases never call it, they emit
//! events and it counts them. Its label lists are derived from the event types
//! ([`LoginOutcome::ALL`], [`RefreshOutcome::ALL`], [`Rejection::labels`]), so a new outcome
//! cannot be counted under a label nobody listed. Lock-free (`AtomicU64`, relaxed), allocated
//! once at start; every series exists from the start. [`Histogram`] and [`write_family`] are
//! also what the HTTP layer renders its per-route latencies with, from its route table.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::event::{Event, LoginOutcome, RefreshOutcome, Rejection, Subscriber};
use crate::model::Counts;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether `peer` may read `/metrics`: loopback (an IPv4-mapped IPv6 loopback too), or an
/// address listed in `LATCHD_METRICS_ALLOW`.
pub fn metrics_allowed(peer: IpAddr, allow: &[IpAddr]) -> bool {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; compare them as IPv4.
    let peer = peer.to_canonical();
    peer.is_loopback() || allow.iter().any(|a| a.to_canonical() == peer)
}

/// The counters of what the use cases reported.
pub struct Metrics {
    logins: [AtomicU64; LoginOutcome::ALL.len()],
    refreshes: [AtomicU64; RefreshOutcome::ALL.len()],
    verified: AtomicU64,
    rejected: Vec<(&'static str, AtomicU64)>,
    registrations: AtomicU64,
    second_factor: [AtomicU64; Event::SECOND_FACTOR.len()],
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            logins: std::array::from_fn(|_| AtomicU64::new(0)),
            refreshes: std::array::from_fn(|_| AtomicU64::new(0)),
            verified: AtomicU64::new(0),
            rejected: Rejection::labels()
                .map(|label| (label, AtomicU64::new(0)))
                .collect(),
            registrations: AtomicU64::new(0),
            second_factor: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The counters' families in the text format 0.0.4, with `# HELP` and `# TYPE`, in name
    /// order, samples in a fixed order, each line ending with a newline; `counts` feeds the
    /// gauges.
    pub fn render(&self, counts: Counts) -> String {
        let mut out = String::with_capacity(4 * 1024);
        // Writing to a String cannot fail; the Result is only fmt::Write's signature.
        let _ = self.write_to(&mut out, counts);
        out
    }

    fn write_to(&self, out: &mut String, counts: Counts) -> fmt::Result {
        write_family(
            out,
            "latchd_blacklist_rows",
            "gauge",
            "Access-token ids on the blacklist (logged out, not yet expired).",
        )?;
        writeln!(out, "latchd_blacklist_rows {}", counts.blacklist)?;

        write_family(
            out,
            "latchd_families_live",
            "gauge",
            "Refresh families (sessions) that are stored and not revoked.",
        )?;
        writeln!(out, "latchd_families_live {}", counts.families)?;

        write_family(
            out,
            "latchd_logins_total",
            "counter",
            "Login attempts by outcome.",
        )?;
        for (outcome, n) in LoginOutcome::ALL.iter().zip(&self.logins) {
            writeln!(
                out,
                "latchd_logins_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                load(n)
            )?;
        }

        write_family(
            out,
            "latchd_refreshes_total",
            "counter",
            "Presented refresh tokens by outcome.",
        )?;
        for (outcome, n) in RefreshOutcome::ALL.iter().zip(&self.refreshes) {
            writeln!(
                out,
                "latchd_refreshes_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                load(n)
            )?;
        }

        write_family(
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

        write_family(
            out,
            "latchd_second_factor_total",
            "counter",
            "TOTP events: enrolments confirmed, turned off, wrong codes at sign-in, recovery \
             codes used, operator resets.",
        )?;
        for (event, n) in Event::SECOND_FACTOR.iter().zip(&self.second_factor) {
            writeln!(
                out,
                "latchd_second_factor_total{{event=\"{event}\"}} {}",
                load(n)
            )?;
        }

        write_family(out, "latchd_users", "gauge", "Registered users.")?;
        writeln!(out, "latchd_users {}", counts.users)?;

        write_family(
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
        for (reason, n) in &self.rejected {
            writeln!(
                out,
                "latchd_verifications_total{{result=\"rejected\",reason=\"{reason}\"}} {}",
                load(n)
            )?;
        }
        Ok(())
    }
}

impl Subscriber for Metrics {
    fn on(&self, event: &Event) {
        match event {
            Event::Login { outcome, .. } => bump(&self.logins[*outcome as usize]),
            Event::Refresh(outcome) => bump(&self.refreshes[*outcome as usize]),
            Event::Verified => bump(&self.verified),
            Event::Rejected(why) => {
                let label = why.label();
                if let Some((_, n)) = self.rejected.iter().find(|(l, _)| *l == label) {
                    bump(n);
                }
            }
            Event::Registered { .. } => bump(&self.registrations),
            other => {
                if let Some(i) = other.second_factor() {
                    bump(&self.second_factor[i]);
                }
            }
        }
    }

    fn expose(&self, counts: Counts, out: &mut String) {
        let _ = self.write_to(out, counts);
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

/// A latency histogram of one series. Buckets are stored non-cumulative (one increment per
/// observation) and summed at render, so `+Inf` always equals `_count` in one scrape.
pub struct Histogram {
    /// One per bound of `BUCKETS`, then the overflow above the largest bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram with the [`BUCKETS`] bounds.
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|(_, bound)| nanos <= *bound)
            .unwrap_or(BUCKETS.len());
        bump(&self.buckets[i]);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes the series' `_bucket`, `_sum` and `_count` lines for family `name`, labelled
    /// `route="<route>"`.
    ///
    /// # Errors
    /// Only `fmt::Write`'s signature: writing to a `String` does not fail.
    pub fn write_to(&self, out: &mut String, name: &str, route: &str) -> fmt::Result {
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

/// Writes the `# HELP` and `# TYPE` lines of a family.
///
/// # Errors
/// Only `fmt::Write`'s signature: writing to a `String` does not fail.
pub fn write_family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
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

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Upper bounds of the latency buckets: the `le` label, and the same bound in nanoseconds.
pub const BUCKETS: [(&str, u64); 14] = [
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
