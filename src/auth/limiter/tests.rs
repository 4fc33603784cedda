use std::net::{IpAddr, Ipv4Addr};

use super::*;

const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> UnixTime {
    UnixTime(secs)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A distinct IPv4 address per `n`, so a test of the account rule never meets the address rule.
fn nth_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn limited(secs: u64) -> Result<(), RateLimited> {
    Err(RateLimited {
        retry_after_secs: secs,
    })
}

fn accounts_only() -> LoginLimiter {
    LoginLimiter::new(LimitPolicy {
        address_failures_per_min: 1_000_000,
        ..LimitPolicy::default()
    })
}

#[test]
fn five_failures_then_a_delay_with_the_right_retry_after() {
    let limiter = LoginLimiter::new(LimitPolicy::default());
    for n in 0..5 {
        assert_eq!(limiter.admit("ada@example.com", nth_ip(n), at(T0)), Ok(()));
    }
    // 1 s from the end of the second of the fifth failure.
    assert_eq!(
        limiter.check("ada@example.com", nth_ip(9), at(T0)),
        limited(2)
    );
    assert_eq!(
        limiter.admit("ada@example.com", nth_ip(9), at(T0)),
        limited(2)
    );
    assert_eq!(
        limiter.admit("ada@example.com", nth_ip(9), at(T0 + 1)),
        limited(1)
    );
    assert_eq!(
        limiter.admit("ada@example.com", nth_ip(9), at(T0 + 2)),
        Ok(())
    );
    // Another account is untouched.
    assert_eq!(limiter.check("bob@example.com", nth_ip(9), at(T0)), Ok(()));
}

#[test]
fn the_account_key_is_the_normalized_email_registered_or_not() {
    let limiter = accounts_only();
    for email in [
        "Ada@Example.com",
        " ada@example.com",
        "ADA@EXAMPLE.COM",
        "ada@example.com ",
    ] {
        limiter.admit(email, nth_ip(1), at(T0)).unwrap();
    }
    limiter.admit("ada@EXAMPLE.com", nth_ip(1), at(T0)).unwrap();
    assert_eq!(
        limiter.check("ada@example.com", nth_ip(2), at(T0)),
        limited(2)
    );
}

#[test]
fn the_delay_doubles_up_to_fifteen_minutes() {
    let limiter = accounts_only();
    let mut now = T0;
    for _ in 0..5 {
        limiter
            .admit("ada@example.com", nth_ip(1), at(now))
            .unwrap();
    }
    let mut waits = Vec::new();
    for _ in 0..14 {
        let Err(refused) = limiter.admit("ada@example.com", nth_ip(1), at(now)) else {
            panic!("admitted at {now} right after a failure");
        };
        waits.push(refused.retry_after_secs);
        now += i64::try_from(refused.retry_after_secs).unwrap();
        assert_eq!(
            limiter.admit("ada@example.com", nth_ip(1), at(now - 1)),
            limited(1),
            "one second early"
        );
        limiter
            .admit("ada@example.com", nth_ip(1), at(now))
            .unwrap();
    }
    // Each wait is the delay plus the rest of the failure's second.
    assert_eq!(
        waits,
        [2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 901, 901, 901, 901]
    );
}

#[test]
fn refused_attempts_do_not_lengthen_the_delay() {
    let limiter = accounts_only();
    for _ in 0..5 {
        limiter.admit("ada@example.com", nth_ip(1), at(T0)).unwrap();
    }
    for _ in 0..100 {
        assert!(limiter
            .admit("ada@example.com", nth_ip(1), at(T0 + 1))
            .is_err());
    }
    assert_eq!(
        limiter.admit("ada@example.com", nth_ip(1), at(T0 + 2)),
        Ok(())
    );
}

#[test]
fn a_success_resets_the_account() {
    let limiter = accounts_only();
    for _ in 0..5 {
        limiter.admit("ada@example.com", nth_ip(1), at(T0)).unwrap();
    }
    limiter
        .admit("ada@example.com", nth_ip(1), at(T0 + 2))
        .unwrap();
    limiter.succeeded("ada@example.com", nth_ip(1), at(T0 + 2));
    for _ in 0..5 {
        assert_eq!(
            limiter.admit("ada@example.com", nth_ip(1), at(T0 + 2)),
            Ok(())
        );
    }
    assert_eq!(
        limiter.check("ada@example.com", nth_ip(1), at(T0 + 2)),
        limited(2)
    );
}

#[test]
fn an_account_idle_for_a_day_starts_over() {
    let limiter = accounts_only();
    for _ in 0..20 {
        let _ = limiter.admit("ada@example.com", nth_ip(1), at(T0));
    }
    let later = T0 + FORGET_ACCOUNT_AFTER_SECS;
    for _ in 0..5 {
        assert_eq!(
            limiter.admit("ada@example.com", nth_ip(1), at(later)),
            Ok(())
        );
    }
    assert_eq!(
        limiter.check("ada@example.com", nth_ip(1), at(later)),
        limited(2)
    );
}

#[test]
fn the_address_bucket_allows_its_rate_per_minute() {
    let limiter = LoginLimiter::new(LimitPolicy::default()); // 20 a minute: one per 3 s
    let client = ip("203.0.113.7");
    for n in 0..20 {
        assert_eq!(
            limiter.admit(&format!("u{n}@example.com"), client, at(T0)),
            Ok(())
        );
    }
    assert_eq!(limiter.admit("x@example.com", client, at(T0)), limited(3));
    assert_eq!(
        limiter.admit("x@example.com", client, at(T0 + 2)),
        limited(1)
    );
    assert_eq!(limiter.admit("x@example.com", client, at(T0 + 3)), Ok(()));
    assert_eq!(
        limiter.admit("y@example.com", client, at(T0 + 3)),
        limited(3)
    );
    // Other addresses have their own bucket.
    assert_eq!(
        limiter.check("x@example.com", ip("203.0.113.8"), at(T0)),
        Ok(())
    );
    // A minute later the bucket is full again.
    for n in 0..20 {
        let email = format!("v{n}@example.com");
        assert_eq!(limiter.admit(&email, client, at(T0 + 63)), Ok(()));
    }
    assert!(limiter.check("z@example.com", client, at(T0 + 63)).is_err());
}

#[test]
fn a_slow_rate_waits_its_share_of_a_minute() {
    let limiter = LoginLimiter::new(LimitPolicy {
        address_failures_per_min: 3,
        ..LimitPolicy::default()
    });
    let client = ip("203.0.113.7");
    for n in 0..3 {
        limiter
            .admit(&format!("u{n}@example.com"), client, at(T0))
            .unwrap();
    }
    assert_eq!(limiter.check("x@example.com", client, at(T0)), limited(20));
    assert_eq!(
        limiter.check("x@example.com", client, at(T0 + 19)),
        limited(1)
    );
    assert_eq!(limiter.check("x@example.com", client, at(T0 + 20)), Ok(()));
}

#[test]
fn a_success_gives_the_address_token_back() {
    let limiter = LoginLimiter::new(LimitPolicy {
        address_failures_per_min: 3,
        ..LimitPolicy::default()
    });
    let client = ip("203.0.113.7");
    for n in 0..10 {
        let email = format!("u{n}@example.com");
        limiter.admit(&email, client, at(T0)).unwrap();
        limiter.succeeded(&email, client, at(T0));
    }
    assert_eq!(limiter.check("x@example.com", client, at(T0)), Ok(()));
}

#[test]
fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
    let limiter = LoginLimiter::new(LimitPolicy {
        address_failures_per_min: 2,
        ..LimitPolicy::default()
    });
    limiter
        .admit("a@example.com", ip("2001:db8::1"), at(T0))
        .unwrap();
    limiter
        .admit("b@example.com", ip("2001:db8::ffff:2"), at(T0))
        .unwrap();
    assert!(limiter
        .check("c@example.com", ip("2001:db8::3"), at(T0))
        .is_err());
    assert_eq!(
        limiter.check("c@example.com", ip("2001:db8:0:1::3"), at(T0)),
        Ok(())
    );

    limiter
        .admit("a@example.com", ip("192.0.2.1"), at(T0))
        .unwrap();
    limiter
        .admit("b@example.com", ip("::ffff:192.0.2.1"), at(T0))
        .unwrap();
    assert!(limiter
        .check("c@example.com", ip("192.0.2.1"), at(T0))
        .is_err());
}

#[test]
fn every_hash_counts_against_the_address_budget_successes_included() {
    let limiter = LoginLimiter::new(LimitPolicy {
        address_hashes_per_min: 3,
        ..LimitPolicy::default()
    });
    let client = ip("203.0.113.7");
    // A burst of twice the rate, then one per 20 s.
    for _ in 0..6 {
        assert_eq!(limiter.admit_hashing(client, at(T0)), Ok(()));
    }
    assert_eq!(limiter.admit_hashing(client, at(T0)), limited(20));
    assert_eq!(limiter.admit_hashing(client, at(T0 + 19)), limited(1));
    assert_eq!(limiter.admit_hashing(client, at(T0 + 20)), Ok(()));
    // The failure rule is a separate bucket: logins are still admitted.
    assert_eq!(limiter.check("a@example.com", client, at(T0 + 20)), Ok(()));
    // Other addresses (and other /64s) have their own budget.
    assert_eq!(limiter.admit_hashing(ip("203.0.113.8"), at(T0)), Ok(()));
    for _ in 0..6 {
        limiter.admit_hashing(ip("2001:db8::1"), at(T0)).unwrap();
    }
    assert!(limiter.admit_hashing(ip("2001:db8::2"), at(T0)).is_err());
    assert_eq!(limiter.admit_hashing(ip("2001:db8:0:1::1"), at(T0)), Ok(()));
}

#[test]
fn a_full_shard_drops_idle_entries_then_the_least_recently_updated() {
    let policy = LimitPolicy::default();
    let mut map: HashMap<u64, AccountState> = HashMap::new();
    for key in 0..8u64 {
        map.insert(
            key,
            AccountState {
                failures: 1,
                last_failure: T0 + i64::try_from(key).unwrap(),
            },
        );
    }
    upsert(&mut map, 100, 8, T0 + 10, &policy).fail(T0 + 10);
    assert_eq!(map.len(), 8);
    assert!(!map.contains_key(&0), "the oldest entry goes first");
    assert!(map.contains_key(&100) && map.contains_key(&1));

    // A day later all of them are idle: they all go, not just an eighth.
    let later = T0 + 10 + FORGET_ACCOUNT_AFTER_SECS;
    upsert(&mut map, 200, 8, later, &policy).fail(later);
    assert_eq!(map.keys().copied().collect::<Vec<_>>(), [200]);
}

#[test]
fn eviction_keeps_each_map_at_its_cap() {
    let limiter = LoginLimiter::new(LimitPolicy {
        max_entries: 64,
        ..LimitPolicy::default()
    });
    for n in 0..5_000u32 {
        let now = T0 + i64::from(n / 50);
        limiter
            .admit(&format!("u{n}@example.com"), nth_ip(n), at(now))
            .unwrap();
        assert!(limiter.accounts.len() <= 64, "after {n}");
        assert!(limiter.addresses.len() <= 64, "after {n}");
    }
}

#[test]
fn memory_stays_bounded_under_100000_distinct_fake_emails() {
    let limiter = LoginLimiter::new(LimitPolicy::default());
    let max_capacity = max_buckets_per_shard(shard_cap(DEFAULT_MAX_ENTRIES)) / 8 * 7;
    for n in 0..150_000u32 {
        let now = T0 + i64::from(n / 100);
        let email = format!("attacker-{n}@random.example");
        limiter.admit(&email, nth_ip(n), at(now)).unwrap();
        if n % 3 == 0 {
            // Removals leave tombstones: the bound must hold with them too.
            limiter.succeeded(&email, nth_ip(n), at(now));
        }
    }
    assert!(limiter.accounts.len() <= DEFAULT_MAX_ENTRIES);
    assert!(limiter.addresses.len() <= DEFAULT_MAX_ENTRIES);
    for shard in &limiter.accounts.shards {
        assert!(shard.lock().unwrap().capacity() <= max_capacity);
    }
    for shard in &limiter.addresses.shards {
        assert!(shard.lock().unwrap().capacity() <= max_capacity);
    }
}

#[test]
fn the_table_bound_is_the_documented_one() {
    assert_eq!(std::mem::size_of::<(u64, AccountState)>(), 24);
    assert_eq!(std::mem::size_of::<(IpAddr, AddressState)>(), 40);
    // 16 shards x 16,384 buckets x (25 + 41) bytes: README.md states this figure.
    assert_eq!(TABLE_BOUND_BYTES, 17_301_504);
}
