//! Login rate limiting, per account and per client address, in memory and bounded.
//!
//! Pure logic over `now` (whole Unix seconds): no clock, no I/O, no HTTP. The state sits behind
//! a few sharded std mutexes whose critical sections are a hash-map lookup or update (plus, once
//! every few hundred inserts into a full shard, one pass over that shard to evict); nothing waits
//! while holding them, so the limiter may be called from async workers and the blocking pool.
//!
//! Two rules, both counted on *failed* attempts and checked before any password is hashed:
//! - **Per account** (the email after [`normalize_email`], registered or not, so a refusal says
//!   nothing about whether the account exists): after [`LimitPolicy::account_failures`]
//!   consecutive failures, each further attempt must wait [`FIRST_DELAY_SECS`] after the last
//!   failure, doubling with every further failure up to [`MAX_DELAY_SECS`]. A success resets it;
//!   an account with no failure for [`FORGET_ACCOUNT_AFTER_SECS`] starts over.
//! - **Per client address** (IPv4, or the /64 prefix of IPv6, since one host usually holds a whole
//!   /64): a token bucket of [`LimitPolicy::address_failures_per_min`] failures, refilled at that
//!   many per minute. A success gives its token back.
//!
//! Beside those, every password hash a client address makes the server compute (logins, right
//! or wrong, registrations, password changes) is charged to a third rule, **per address**: a
//! token bucket of [`LimitPolicy::address_hashes_per_min`] hashes a minute with a burst of
//! twice that ([`LoginLimiter::admit_hashing`]). It is what keeps one address from filling the
//! hashing queue with registrations or with successful logins of its own account.
//!
//! An attempt counts as a failure from the moment it is admitted ([`LoginLimiter::admit`]) until
//! the password is found to match ([`LoginLimiter::succeeded`]), so concurrent guesses cannot
//! slip past the limit while their hashes are still running.
//!
//! Memory is bounded under a flood of random emails and addresses: each map holds at most
//! [`LimitPolicy::max_entries`] entries; when a shard is full, entries that no longer limit
//! anything go first, then the least recently updated eighth of the shard. Emails are not kept:
//! an account is a 64-bit hash of its normalized email under a per-process random key. At the
//! default cap the tables take at most [`TABLE_BOUND_BYTES`] (about 16.5 MiB).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::model::normalize_email;
use crate::time::UnixTime;

/// Default consecutive failed logins of one account before attempts are delayed.
pub const DEFAULT_ACCOUNT_FAILURES: u32 = 5;
/// Default failed logins one client address may make per minute (sustained; also the burst).
pub const DEFAULT_ADDRESS_FAILURES_PER_MIN: u32 = 20;
/// Default password hashes one client address may cause per minute (sustained; the burst is
/// twice this).
pub const DEFAULT_ADDRESS_HASHES_PER_MIN: u32 = 30;
/// Delay after the last failure once an account reaches its failure threshold.
pub const FIRST_DELAY_SECS: i64 = 1;
/// Longest delay between attempts on one account (15 minutes).
pub const MAX_DELAY_SECS: i64 = 900;
/// An account with no failure for this long starts over with a clean count.
pub const FORGET_ACCOUNT_AFTER_SECS: i64 = 86_400;
/// Default cap on the entries of each map (accounts, addresses).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Upper bound, in bytes, of the two maps' tables at [`DEFAULT_MAX_ENTRIES`].
pub const TABLE_BOUND_BYTES: usize = table_bound_bytes(DEFAULT_MAX_ENTRIES);

/// Independent locks per map, so concurrent logins for different keys rarely contend.
const SHARDS: usize = 16;
/// A minute, the period of the per-address rate.
const MINUTE_SECS: i64 = 60;

/// The limits, from `LATCHD_LOGIN_ACCOUNT_FAILURES` and `LATCHD_LOGIN_ADDRESS_PER_MIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Consecutive failures of one account before attempts are delayed (at least 1).
    pub account_failures: u32,
    /// Failed attempts per minute from one client address (at least 1).
    pub address_failures_per_min: u32,
    /// Password hashes per minute one client address may cause, successes included (at
    /// least 1); the bucket holds twice this.
    pub address_hashes_per_min: u32,
    /// Cap on the entries of each map.
    pub max_entries: usize,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            account_failures: DEFAULT_ACCOUNT_FAILURES,
            address_failures_per_min: DEFAULT_ADDRESS_FAILURES_PER_MIN,
            address_hashes_per_min: DEFAULT_ADDRESS_HASHES_PER_MIN,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// A refused login attempt: over a limit until `retry_after_secs` have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Whole seconds to wait before the next attempt can be admitted (at least 1).
    pub retry_after_secs: u64,
}

/// The per-account and per-address login limits of one process.
pub struct LoginLimiter {
    policy: LimitPolicy,
    keys: RandomState,
    accounts: Table<u64, AccountState>,
    addresses: Table<IpAddr, AddressState>,
}

impl fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl LoginLimiter {
    /// An empty limiter; zero limits are raised to 1.
    pub fn new(policy: LimitPolicy) -> Self {
        let policy = LimitPolicy {
            account_failures: policy.account_failures.max(1),
            address_failures_per_min: policy.address_failures_per_min.max(1),
            address_hashes_per_min: policy.address_hashes_per_min.max(1),
            max_entries: policy.max_entries.max(1),
        };
        Self {
            policy,
            keys: RandomState::new(),
            accounts: Table::new(policy.max_entries),
            addresses: Table::new(policy.max_entries),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> LimitPolicy {
        self.policy
    }

    /// Whether an attempt on `email` from `client` would be admitted at `now`, changing nothing.
    /// Cheap: the HTTP layer asks before queueing for the hashing pool.
    ///
    /// # Errors
    /// [`RateLimited`] with the longer of the two waits when a limit is reached.
    pub fn check(&self, email: &str, client: IpAddr, now: UnixTime) -> Result<(), RateLimited> {
        let (account, address) = (self.account_key(email), address_key(client));
        let accounts = self.accounts.shard(account);
        let addresses = self.addresses.shard(self.keys.hash_one(address));
        self.wait(accounts.get(&account), addresses.get(&address), now.secs())
    }

    /// Admits an attempt on `email` from `client` at `now` and counts it as a failure until
    /// [`succeeded`](Self::succeeded) says otherwise. Call before hashing the password.
    ///
    /// # Errors
    /// [`RateLimited`] when a limit is reached; the attempt is then not counted.
    pub fn admit(&self, email: &str, client: IpAddr, now: UnixTime) -> Result<(), RateLimited> {
        let now = now.secs();
        let (account, address) = (self.account_key(email), address_key(client));
        // Always the account shard first, then the address shard: no lock-order inversion.
        let mut accounts = self.accounts.shard(account);
        let mut addresses = self.addresses.shard(self.keys.hash_one(address));
        self.wait(accounts.get(&account), addresses.get(&address), now)?;
        let policy = &self.policy;
        let state = upsert(&mut accounts, account, self.accounts.shard_cap, now, policy);
        state.fail(now);
        let state = upsert(
            &mut addresses,
            address,
            self.addresses.shard_cap,
            now,
            policy,
        );
        state.failures.charge(now, self.failure_bucket());
        Ok(())
    }

    /// Charges one password hash to `client` at `now`, before it is queued: registrations,
    /// logins and password changes, whatever their outcome.
    ///
    /// # Errors
    /// [`RateLimited`] when the address has used its hashing budget; nothing is charged then.
    pub fn admit_hashing(&self, client: IpAddr, now: UnixTime) -> Result<(), RateLimited> {
        let now = now.secs();
        let address = address_key(client);
        let mut addresses = self.addresses.shard(self.keys.hash_one(address));
        if let Some(secs) = addresses
            .get(&address)
            .and_then(|s| s.hashes.wait_secs(now, self.hash_bucket()))
        {
            return Err(RateLimited {
                retry_after_secs: u64::try_from(secs).unwrap_or(1).max(1),
            });
        }
        let policy = &self.policy;
        let state = upsert(
            &mut addresses,
            address,
            self.addresses.shard_cap,
            now,
            policy,
        );
        state.hashes.charge(now, self.hash_bucket());
        Ok(())
    }

    /// Records that the attempt admitted for `email` from `client` had the right password: the
    /// account's failures are forgiven and the address gets its token back.
    pub fn succeeded(&self, email: &str, client: IpAddr, now: UnixTime) {
        let (account, address) = (self.account_key(email), address_key(client));
        self.accounts.shard(account).remove(&account);
        let mut addresses = self.addresses.shard(self.keys.hash_one(address));
        if let Some(state) = addresses.get_mut(&address) {
            state.failures.refund(now.secs(), self.failure_bucket());
        }
    }

    fn failure_bucket(&self) -> Bucket {
        Bucket::new(self.policy.address_failures_per_min, 1)
    }

    fn hash_bucket(&self) -> Bucket {
        Bucket::new(self.policy.address_hashes_per_min, 2)
    }

    fn account_key(&self, email: &str) -> u64 {
        self.keys.hash_one(normalize_email(email))
    }

    /// The longer wait of the two rules, if either refuses.
    fn wait(
        &self,
        account: Option<&AccountState>,
        address: Option<&AddressState>,
        now: i64,
    ) -> Result<(), RateLimited> {
        let account = account.and_then(|s| s.wait_secs(now, &self.policy));
        let address = address.and_then(|s| s.failures.wait_secs(now, self.failure_bucket()));
        match account.max(address) {
            None => Ok(()),
            Some(secs) => Err(RateLimited {
                retry_after_secs: u64::try_from(secs).unwrap_or(1).max(1),
            }),
        }
    }
}

/// Upper bound, in bytes, of the two maps' hash tables when each holds at most `max_entries`.
///
/// A std `HashMap` keeps at most 7/8 of its buckets full, and the tombstones that removals
/// leave can make it double once more; each bucket holds one entry and one control byte. The
/// fixed overhead (16 mutexes and map headers per map) is a few KiB more.
pub const fn table_bound_bytes(max_entries: usize) -> usize {
    let buckets = SHARDS * max_buckets_per_shard(shard_cap(max_entries));
    let account = std::mem::size_of::<(u64, AccountState)>() + 1;
    let address = std::mem::size_of::<(IpAddr, AddressState)>() + 1;
    buckets * (account + address)
}

/// The buckets a shard's table can reach holding at most `cap` entries.
const fn max_buckets_per_shard(cap: usize) -> usize {
    2 * (cap * 8 / 7 + 1).next_power_of_two()
}

const fn shard_cap(max_entries: usize) -> usize {
    let cap = max_entries / SHARDS;
    if cap == 0 {
        1
    } else {
        cap
    }
}

/// The key of a client address: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
fn address_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// One account's consecutive failures.
#[derive(Clone, Copy, Debug, Default)]
struct AccountState {
    failures: u32,
    last_failure: i64,
}

impl AccountState {
    /// Seconds until the next attempt is allowed, if it must wait. Times are whole seconds, so
    /// the delay runs from the end of the second of the last failure: the wait is never shorter
    /// than the delay, and waiting the answer is always enough.
    fn wait_secs(&self, now: i64, policy: &LimitPolicy) -> Option<i64> {
        if self.failures < policy.account_failures || self.forgotten(now) {
            return None;
        }
        let delay = delay_secs(self.failures - policy.account_failures);
        let allowed_at = self.last_failure.saturating_add(delay).saturating_add(1);
        // A clock that stepped back must not lengthen the wait past one delay.
        (now < allowed_at).then(|| allowed_at.saturating_sub(now).min(delay + 1))
    }

    fn fail(&mut self, now: i64) {
        if self.forgotten(now) {
            *self = Self::default();
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
    }

    fn forgotten(&self, now: i64) -> bool {
        now.saturating_sub(self.last_failure) >= FORGET_ACCOUNT_AFTER_SECS
    }
}

/// The delay after `extra` failures past the threshold: 1 s, 2 s, 4 s ... up to 15 min.
fn delay_secs(extra: u32) -> i64 {
    // 2^10 s already exceeds the cap; a smaller shift cannot overflow.
    (FIRST_DELAY_SECS << extra.min(10)).min(MAX_DELAY_SECS)
}

/// One address's two token buckets: failed logins, and password hashes of any outcome.
#[derive(Clone, Copy, Debug, Default)]
struct AddressState {
    failures: Gcra,
    hashes: Gcra,
}

/// The shape of one token bucket: `rate` tokens a minute, holding at most `burst_factor` times
/// that.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    rate: i64,
    burst: i64,
}

impl Bucket {
    fn new(per_min: u32, burst_factor: i64) -> Self {
        let rate = i64::from(per_min.max(1));
        Self {
            rate,
            burst: rate.saturating_mul(burst_factor),
        }
    }
}

/// A token bucket, as the time at which it is full again (GCRA). Time is counted in units of
/// 1/`rate` s, so one token's share of a minute is exactly `MINUTE_SECS` units and everything
/// stays in integers.
#[derive(Clone, Copy, Debug, Default)]
struct Gcra {
    full_at_units: i64,
}

impl Gcra {
    fn wait_secs(self, now: i64, bucket: Bucket) -> Option<i64> {
        let now_units = now.saturating_mul(bucket.rate);
        // Admitted while the bucket, after this attempt, would hold no more than `burst`
        // tokens' debt.
        let allowed_from = self
            .full_at_units
            .saturating_sub((bucket.burst - 1).saturating_mul(MINUTE_SECS));
        (now_units < allowed_from).then(|| {
            let units = allowed_from.saturating_sub(now_units);
            units.saturating_add(bucket.rate - 1) / bucket.rate // rounded up to whole seconds
        })
    }

    fn charge(&mut self, now: i64, bucket: Bucket) {
        let now_units = now.saturating_mul(bucket.rate);
        self.full_at_units = self
            .full_at_units
            .max(now_units)
            .saturating_add(MINUTE_SECS);
    }

    fn refund(&mut self, now: i64, bucket: Bucket) {
        let now_units = now.saturating_mul(bucket.rate);
        self.full_at_units = self
            .full_at_units
            .saturating_sub(MINUTE_SECS)
            .max(now_units);
    }

    /// Whether the bucket is full at `now`, so forgetting it changes no answer.
    fn full(self, now: i64, bucket: Bucket) -> bool {
        self.full_at_units <= now.saturating_mul(bucket.rate)
    }
}

/// What eviction needs to know of an entry.
trait Entry: Default {
    /// When the entry last changed, comparable between entries of one map.
    fn stamp(&self, policy: &LimitPolicy) -> i64;
    /// Whether the entry no longer limits anything, so dropping it changes no answer.
    fn idle(&self, now: i64, policy: &LimitPolicy) -> bool;
}

impl Entry for AccountState {
    fn stamp(&self, _policy: &LimitPolicy) -> i64 {
        self.last_failure
    }

    fn idle(&self, now: i64, _policy: &LimitPolicy) -> bool {
        self.forgotten(now)
    }
}

impl Entry for AddressState {
    fn stamp(&self, policy: &LimitPolicy) -> i64 {
        // The buckets count in different units; in seconds, the later of their full times.
        let secs = |g: Gcra, per_min: u32| g.full_at_units / i64::from(per_min.max(1));
        secs(self.failures, policy.address_failures_per_min)
            .max(secs(self.hashes, policy.address_hashes_per_min))
    }

    fn idle(&self, now: i64, policy: &LimitPolicy) -> bool {
        self.failures
            .full(now, Bucket::new(policy.address_failures_per_min, 1))
            && self
                .hashes
                .full(now, Bucket::new(policy.address_hashes_per_min, 2))
    }
}

/// A map split over `SHARDS` mutexes, each holding at most `shard_cap` entries.
struct Table<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    shard_cap: usize,
}

impl<K, V> Table<K, V> {
    fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_cap: shard_cap(max_entries),
        }
    }

    /// The shard of a key whose hash (under the limiter's random key) is `hash`.
    fn shard(&self, hash: u64) -> MutexGuard<'_, HashMap<K, V>> {
        // Both casts are lossless: SHARDS is 16.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash % SHARDS as u64) as usize;
        // Every update leaves an entry valid, so a panic elsewhere cannot leave it half-done.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The entry of `key`, created if absent; a full map is evicted into first.
fn upsert<'m, K: Copy + Eq + Hash, V: Entry>(
    map: &'m mut HashMap<K, V>,
    key: K,
    cap: usize,
    now: i64,
    policy: &LimitPolicy,
) -> &'m mut V {
    if map.len() >= cap && !map.contains_key(&key) {
        evict(map, cap, now, policy);
    }
    map.entry(key).or_default()
}

/// Drops the idle entries; if the map is still full, the least recently updated eighth too,
/// so the next `cap / 8` inserts need no eviction (amortized O(1) per insert).
fn evict<K: Copy + Eq + Hash, V: Entry>(
    map: &mut HashMap<K, V>,
    cap: usize,
    now: i64,
    policy: &LimitPolicy,
) {
    map.retain(|_, state| !state.idle(now, policy));
    if map.len() < cap {
        return;
    }
    let count = (cap / 8).max(map.len() + 1 - cap).max(1);
    let mut stamps: Vec<(i64, K)> = map.iter().map(|(k, v)| (v.stamp(policy), *k)).collect();
    stamps.select_nth_unstable_by_key(count - 1, |(stamp, _)| *stamp);
    for (_, key) in stamps.iter().take(count) {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests;
