//! The in-memory mirror of what request checks need, kept compact so that memory follows the
//! number of users and live sessions, not the file: each user's token version, disabled flag,
//! email and roles (forward-auth's headers); which user each live session belongs to (and the
//! cookies of browser sessions); the blacklist. Password hashes, TOTP, ended sessions and
//! everything else stay on disk, read in a transaction by the use cases that need them.
//!
//! Users live in a slab of fixed-size slots indexed by `u32`: their emails in one byte arena,
//! their role lists interned (most users share a handful of role sets), and a live session
//! maps to its user's slot index rather than to the user's id. The users read at open are
//! found by a sorted list of their ids, those added since by a map. At a million users and a
//! million sessions that is about 110 MB, against ~280 MB for maps of owned values.
//!
//! It follows disk and never leads it: a change is applied only after the transaction that
//! made it has committed. The one exception is a browser session's last use, which only memory
//! tracks request by request (see [`View::check_browser`]).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::model::{
    AccessDenied, BrowserStanding, Counts, FamilyId, Jti, SessionPolicy, User, UserFacts, UserId,
};
use crate::time::UnixTime;

/// One committed change to mirror.
#[derive(Debug)]
pub(super) enum Change {
    User {
        id: UserId,
        token_version: u64,
        disabled: bool,
        facts: UserFacts,
    },
    UserGone(UserId),
    Family {
        id: FamilyId,
        user: UserId,
    },
    /// A browser session's cookie, beside its `Family` change.
    Browser {
        cookie_hash: [u8; 32],
        family: FamilyId,
        user: UserId,
        mfa: bool,
        expires_at_max: i64,
        idle_secs: i64,
        last_used_at: i64,
    },
    FamilyGone(FamilyId),
    /// A browser session's last use reached disk.
    Touched {
        family: FamilyId,
        at: i64,
    },
    Blacklisted {
        jti: Jti,
        exp: i64,
    },
    Unblacklisted(Jti),
}

impl Change {
    /// The change that mirrors `user`'s current row.
    pub(super) fn user(user: &User) -> Self {
        Self::User {
            id: user.id,
            token_version: user.token_version,
            disabled: user.disabled,
            facts: UserFacts {
                email: Arc::from(user.email.as_str()),
                roles: Arc::from(user.roles.as_slice()),
            },
        }
    }
}

#[derive(Default)]
pub(super) struct View {
    inner: RwLock<Mirror>,
}

#[derive(Default)]
struct Mirror {
    users: Users,
    /// Families that exist and are not revoked, to the slot of their user.
    families: HashMap<FamilyId, u32>,
    /// Live browser sessions by the SHA-256 of their cookie.
    browser: HashMap<[u8; 32], BrowserEntry>,
    browser_by_family: HashMap<FamilyId, [u8; 32]>,
    blacklist: HashMap<Jti, i64>,
}

/// Every user, in compact slots.
#[derive(Default)]
struct Users {
    /// The slot of each user.
    index: Index,
    slots: Vec<Slot>,
    /// Slots of deleted users, for the next new ones. No live family points at one: deleting a
    /// user ends its families in the same change list.
    free: Vec<u32>,
    emails: Emails,
    roles: RoleSets,
}

/// The slot of each user. The users read at open are a sorted list of ids, the `i`th in slot
/// `i`, found through a table of where each leading bit pattern starts and a binary search in
/// the few ids sharing it: 16 bytes a user, built at open in one pass, where a hash map took 40
/// (its table, at a million users, was twice the entries) and a cache miss per insert. Users
/// added since are in a map.
#[derive(Default)]
struct Index {
    /// The ids of the users read at open, sorted; the `i`th is in slot `i` unless `gone`.
    loaded: Vec<UserId>,
    /// `starts[p]..starts[p + 1]` are the ids in `loaded` whose first `bits` bits are `p`.
    starts: Vec<u32>,
    bits: u32,
    /// A bit per loaded user deleted since (its slot may hold another user now).
    gone: Vec<u64>,
    gone_count: usize,
    /// Users added since open.
    added: HashMap<UserId, u32>,
}

/// About this many loaded ids share a leading bit pattern (a binary search in a few cache
/// lines).
const IDS_PER_PREFIX: usize = 16;

impl Index {
    /// The index of `loaded` (sorted, no id twice), the `i`th in slot `i`.
    fn of_loaded(loaded: Vec<UserId>) -> Self {
        let bits = (usize::BITS - (loaded.len() / IDS_PER_PREFIX).leading_zeros()).min(16);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0;
        for p in 0..=(1u32 << bits) {
            while loaded.get(at).is_some_and(|id| prefix(*id, bits) < p) {
                at += 1;
            }
            starts.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        let words = loaded.len().div_ceil(64);
        Self {
            loaded,
            starts,
            bits,
            gone: vec![0; words],
            gone_count: 0,
            added: HashMap::new(),
        }
    }

    /// The position of `id` among the loaded users still there.
    fn loaded_at(&self, id: UserId) -> Option<usize> {
        let p = prefix(id, self.bits) as usize;
        let (from, to) = (
            *self.starts.get(p)? as usize,
            *self.starts.get(p + 1)? as usize,
        );
        let at = from + self.loaded.get(from..to)?.binary_search(&id).ok()?;
        let gone = self.gone.get(at / 64)? >> (at % 64) & 1 == 1;
        (!gone).then_some(at)
    }

    fn get(&self, id: UserId) -> Option<u32> {
        match self.loaded_at(id) {
            Some(at) => u32::try_from(at).ok(),
            None if self.added.is_empty() => None,
            None => self.added.get(&id).copied(),
        }
    }

    /// Adds a user not in the index.
    fn insert(&mut self, id: UserId, at: u32) {
        self.added.insert(id, at);
    }

    fn remove(&mut self, id: UserId) -> Option<u32> {
        let Some(at) = self.loaded_at(id) else {
            return self.added.remove(&id);
        };
        let word = self.gone.get_mut(at / 64)?;
        *word |= 1 << (at % 64);
        self.gone_count += 1;
        u32::try_from(at).ok()
    }

    fn len(&self) -> usize {
        self.loaded.len() - self.gone_count + self.added.len()
    }

    /// Every user's slot.
    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        let loaded = (0..self.loaded.len())
            .filter(|&at| {
                self.gone
                    .get(at / 64)
                    .is_some_and(|w| w >> (at % 64) & 1 == 0)
            })
            .filter_map(|at| u32::try_from(at).ok());
        loaded.chain(self.added.values().copied())
    }
}

/// The first `bits` bits of `id`.
fn prefix(id: UserId, bits: u32) -> u32 {
    let first = u32::from(u16::from_be_bytes([id.0.as_bytes()[0], id.0.as_bytes()[1]]));
    first.checked_shr(16 - bits).unwrap_or(0)
}

/// What the checks read of one user: 24 bytes.
#[derive(Clone, Copy)]
struct Slot {
    token_version: u64,
    email: Span,
    roles: u32,
    disabled: bool,
}

/// Where an email sits in [`Emails`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

/// Every user's email in one string: no allocation (and its overhead) per user.
#[derive(Default)]
struct Emails {
    text: String,
    /// Bytes of `text` no slot points at any more (deleted users, changed emails).
    garbage: usize,
}

/// The distinct role lists users hold, each kept once. A list no user holds any more stays
/// until restart: they are few (an operator's choices), not one per user.
#[derive(Default)]
struct RoleSets {
    lists: Vec<Arc<[String]>>,
    ids: HashMap<Arc<[String]>, u32>,
}

struct BrowserEntry {
    family: FamilyId,
    user: UserId,
    mfa: bool,
    expires_at_max: i64,
    idle_secs: i64,
    /// The last use seen in memory (every request moves it).
    last_used: AtomicI64,
    /// The last use on disk.
    persisted: AtomicI64,
    /// When a refresh of `persisted` was last asked for (0: never).
    touch_asked: AtomicI64,
}

/// Builds the view from the tables at open, before anyone reads it.
pub(super) struct Builder {
    mirror: Mirror,
    /// The id of each slot, in slot order: the index is built from it at the end, on a thread
    /// of its own while the sessions go in, rather than with a lookup and an insert per user.
    ids: Vec<UserId>,
    sessions: LiveSessions,
}

/// Live sessions read at open, each with its user; put in the view by [`Builder::finish`].
#[derive(Default)]
pub(super) struct LiveSessions {
    /// `(user, session)`; sorted before use.
    by_user: Vec<(UserId, FamilyId)>,
}

impl LiveSessions {
    pub(super) fn with_capacity(sessions: usize) -> Self {
        Self {
            by_user: Vec::with_capacity(sessions),
        }
    }

    pub(super) fn push(&mut self, id: FamilyId, user: UserId) {
        self.by_user.push((user, id));
    }

    /// Puts them in the order of their users (worth doing on the thread that read them, before
    /// [`Builder::sessions`]: `finish` sorts only what is not sorted yet).
    pub(super) fn sort(&mut self) {
        self.by_user.sort_unstable();
    }
}

/// A refresh of a session's last use on disk is asked for once it lags memory by this share
/// of the idle window: a restart then takes at most that share from the session.
const TOUCH_FRACTION: i64 = 4;
/// Ask again after this long if a refresh did not reach disk (a failed write).
const TOUCH_RETRY_SECS: i64 = 60;
/// The email arena is rewritten once this much of it, and half of it, is garbage.
const EMAIL_GARBAGE_BYTES: usize = 1 << 20;

impl View {
    pub(super) fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        // A panic while holding the lock cannot leave a half-applied change worse than the
        // missing one, so a poisoned lock is still usable.
        let mut m = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            m.apply(change);
        }
    }

    /// Replaces everything mirrored with `fresh` (a reload).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) fn replace(&self, fresh: View) {
        let fresh = fresh
            .inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    pub(super) fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let (at, state) = m.users.get(user).ok_or(AccessDenied::UnknownUser)?;
        if state.disabled {
            return Err(AccessDenied::UserDisabled);
        }
        if version < state.token_version {
            return Err(AccessDenied::StaleVersion);
        }
        if m.families.get(&family) != Some(&at) {
            return Err(AccessDenied::FamilyRevoked);
        }
        if m.blacklist.contains_key(&jti) {
            return Err(AccessDenied::Blacklisted);
        }
        Ok(())
    }

    /// The browser session of `cookie_hash`, if it may be used at `now`; moves its last use
    /// in memory to `now`. The idle timeout is the session's own or the policy's, whichever is
    /// shorter, so lowering `LATCHD_SESSION_IDLE` applies to sessions already open.
    pub(super) fn check_browser(
        &self,
        cookie_hash: &[u8; 32],
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<BrowserStanding, AccessDenied> {
        let now = now.secs();
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let entry = m
            .browser
            .get(cookie_hash)
            .ok_or(AccessDenied::UnknownSession)?;
        let (at, state) = m.users.get(entry.user).ok_or(AccessDenied::UnknownUser)?;
        if state.disabled {
            return Err(AccessDenied::UserDisabled);
        }
        if m.families.get(&entry.family) != Some(&at) {
            return Err(AccessDenied::FamilyRevoked);
        }
        let idle = entry.idle_secs.min(policy.idle_secs).max(1);
        let last = entry.last_used.load(Ordering::Relaxed);
        if now >= entry.expires_at_max || now >= last.saturating_add(idle) {
            return Err(AccessDenied::SessionExpired);
        }
        entry.last_used.fetch_max(now, Ordering::Relaxed);
        let lag = now.saturating_sub(entry.persisted.load(Ordering::Relaxed));
        let asked = entry.touch_asked.load(Ordering::Relaxed);
        let touch_due = lag >= idle / TOUCH_FRACTION
            && now.saturating_sub(asked) >= TOUCH_RETRY_SECS.min(idle / TOUCH_FRACTION)
            && entry
                .touch_asked
                .compare_exchange(asked, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        Ok(BrowserStanding {
            family: entry.family,
            user: entry.user,
            facts: m.users.facts(state),
            mfa: entry.mfa,
            touch_due,
        })
    }

    pub(super) fn user_facts(&self, user: UserId) -> Option<UserFacts> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.users.get(user).map(|(_, state)| m.users.facts(state))
    }

    pub(super) fn is_blacklisted(&self, jti: Jti) -> bool {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.blacklist.contains_key(&jti)
    }

    pub(super) fn token_version(&self, user: UserId) -> Option<u64> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.users.get(user).map(|(_, state)| state.token_version)
    }

    pub(super) fn counts(&self) -> Counts {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Counts {
            users: m.users.index.len(),
            families: m.families.len(),
            blacklist: m.blacklist.len(),
        }
    }
}

impl Builder {
    /// A view about to hold `users` users and `families` live sessions (sized once, so that
    /// loading does not grow and copy its lists).
    pub(super) fn new(users: usize, families: usize) -> Self {
        let mut mirror = Mirror::default();
        mirror.users.slots.reserve_exact(users);
        Self {
            mirror,
            ids: Vec::with_capacity(users),
            sessions: LiveSessions::with_capacity(families),
        }
    }

    /// Mirrors one user row; each user once (the rows of one table, by their key).
    pub(super) fn user(
        &mut self,
        id: UserId,
        token_version: u64,
        disabled: bool,
        email: &str,
        roles: &[String],
    ) {
        let users = &mut self.mirror.users;
        if u32::try_from(users.slots.len()).is_err() {
            // Four billion users: not mirrored, so their tokens are refused, never wrongly
            // granted.
            tracing::error!("the in-memory view is full; a user was not mirrored");
            return;
        }
        let slot = Slot {
            token_version,
            email: users.emails.push(email),
            roles: users.roles.intern(roles),
            disabled,
        };
        users.slots.push(slot);
        self.ids.push(id);
    }

    /// Mirrors a live family of `user` (whose row may come before or after it).
    #[cfg_attr(not(any(test, feature = "postgres")), allow(dead_code))]
    pub(super) fn family(&mut self, id: FamilyId, user: UserId) {
        self.sessions.push(id, user);
    }

    /// Mirrors live families read elsewhere (on another thread), as [`family`](Self::family)
    /// would.
    pub(super) fn sessions(&mut self, mut sessions: LiveSessions) {
        if self.sessions.by_user.is_empty() {
            self.sessions = sessions;
        } else {
            self.sessions.by_user.append(&mut sessions.by_user);
        }
    }

    /// Mirrors any other row.
    pub(super) fn change(&mut self, change: Change) {
        self.mirror.apply(change);
    }

    /// The view. Each live family maps to the slot of its user, found by walking the families
    /// and the users both in the order of the users' ids (no lookup per family); a family
    /// whose user is not mirrored is left out (its tokens are refused).
    pub(super) fn finish(mut self) -> View {
        self.mirror.users.emails.text.shrink_to_fit();
        let users = &mut self.mirror.users;
        // The index wants the slots in the order of their ids (that of the rows as read,
        // unless they came otherwise, from PostgreSQL), each id once (the rows of one table,
        // by their key; were one there twice, the later row would win, as it would in a map).
        if !self.ids.windows(2).all(|w| w[0] < w[1]) {
            let mut both: Vec<(UserId, Slot)> =
                self.ids.drain(..).zip(users.slots.drain(..)).collect();
            both.sort_by_key(|(id, _)| *id);
            both.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
            (self.ids, users.slots) = both.into_iter().unzip();
        }
        let sessions = &mut self.sessions.by_user;
        if !sessions.is_sorted() {
            sessions.sort_unstable();
        }
        let ids = &self.ids;
        let mut at = 0;
        let live = sessions.iter().filter_map(|&(owner, family)| {
            while ids.get(at).is_some_and(|id| *id < owner) {
                at += 1;
            }
            let slot = u32::try_from(at).ok()?;
            (*ids.get(at)? == owner).then_some((family, slot))
        });
        fill(&mut self.mirror.families, sessions.len(), live);
        self.mirror.users.index = Index::of_loaded(self.ids);
        View {
            inner: RwLock::new(self.mirror),
        }
    }
}

/// Fills `map` (empty) with at most `count` `entries`, inserted in the order of the buckets
/// they land in: filling then walks the table's memory once rather than touching a random
/// place of it per entry, which at a million entries was most of the cost (a cache miss each;
/// 2.5x faster this way, sorting included). The order follows std's table (the low bits of the
/// hash pick the bucket, and a reserved table has the smallest power of two of buckets whose
/// seven eighths hold `count`); were it wrong the map would be the same, only slower to fill.
fn fill<K: Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    count: usize,
    entries: impl Iterator<Item = (K, V)>,
) {
    map.reserve(count);
    let buckets = (map.capacity() / 7 * 8).next_power_of_two();
    let mask = u64::try_from(buckets - 1).unwrap_or(u64::MAX);
    let hasher = map.hasher();
    let mut ordered: Vec<(u64, K, V)> = Vec::with_capacity(count);
    ordered.extend(entries.map(|(k, v)| (hasher.hash_one(&k) & mask, k, v)));
    ordered.sort_unstable_by_key(|(bucket, _, _)| *bucket);
    for (_, k, v) in ordered {
        map.insert(k, v);
    }
}

impl Mirror {
    fn apply(&mut self, change: Change) {
        match change {
            Change::User {
                id,
                token_version,
                disabled,
                facts,
            } => {
                self.users
                    .upsert(id, token_version, disabled, &facts.email, &facts.roles);
            }
            Change::UserGone(id) => self.users.remove(id),
            Change::Family { id, user } => {
                // A session opens only for a user already mirrored (its row was written
                // first); were it not, the session is refused, never granted.
                if let Some(at) = self.users.index.get(user) {
                    self.families.insert(id, at);
                }
            }
            Change::Browser {
                cookie_hash,
                family,
                user,
                mfa,
                expires_at_max,
                idle_secs,
                last_used_at,
            } => {
                // Mirrored again (another node's write, read back by the PostgreSQL feed):
                // the uses this node saw are kept, and the last use on disk can only move on.
                if let Some(entry) = self.browser.get(&cookie_hash) {
                    entry.last_used.fetch_max(last_used_at, Ordering::Relaxed);
                    entry.persisted.fetch_max(last_used_at, Ordering::Relaxed);
                    return;
                }
                self.browser_by_family.insert(family, cookie_hash);
                self.browser.insert(
                    cookie_hash,
                    BrowserEntry {
                        family,
                        user,
                        mfa,
                        expires_at_max,
                        idle_secs,
                        last_used: AtomicI64::new(last_used_at),
                        persisted: AtomicI64::new(last_used_at),
                        touch_asked: AtomicI64::new(0),
                    },
                );
            }
            Change::FamilyGone(id) => {
                self.families.remove(&id);
                if let Some(hash) = self.browser_by_family.remove(&id) {
                    self.browser.remove(&hash);
                }
            }
            Change::Touched { family, at } => {
                if let Some(entry) = self
                    .browser_by_family
                    .get(&family)
                    .and_then(|h| self.browser.get(h))
                {
                    entry.persisted.fetch_max(at, Ordering::Relaxed);
                }
            }
            Change::Blacklisted { jti, exp } => {
                self.blacklist.insert(jti, exp);
            }
            Change::Unblacklisted(jti) => {
                self.blacklist.remove(&jti);
            }
        }
    }
}

impl Users {
    /// The user's slot index and slot.
    fn get(&self, id: UserId) -> Option<(u32, &Slot)> {
        let at = self.index.get(id)?;
        let slot = self.slots.get(usize::try_from(at).ok()?)?;
        Some((at, slot))
    }

    fn facts(&self, slot: &Slot) -> UserFacts {
        UserFacts {
            email: Arc::from(self.emails.get(slot.email)),
            roles: self.roles.get(slot.roles),
        }
    }

    fn upsert(
        &mut self,
        id: UserId,
        token_version: u64,
        disabled: bool,
        email: &str,
        roles: &[String],
    ) {
        let roles = self.roles.intern(roles);
        if let Some((at, old)) = self.get(id) {
            let email = if self.emails.get(old.email) == email {
                old.email
            } else {
                self.emails.garbage += old.email.len as usize;
                self.emails.push(email)
            };
            if let Some(slot) = usize::try_from(at).ok().and_then(|i| self.slots.get_mut(i)) {
                *slot = Slot {
                    token_version,
                    email,
                    roles,
                    disabled,
                };
            }
            self.compact_if_due();
            return;
        }
        let slot = Slot {
            token_version,
            email: self.emails.push(email),
            roles,
            disabled,
        };
        let at = if let Some(at) = self.free.pop() {
            if let Some(free) = usize::try_from(at).ok().and_then(|i| self.slots.get_mut(i)) {
                *free = slot;
            }
            at
        } else {
            let Ok(at) = u32::try_from(self.slots.len()) else {
                // Four billion users: not mirrored, so their tokens are refused, never
                // wrongly granted.
                tracing::error!("the in-memory view is full; a user was not mirrored");
                return;
            };
            self.slots.push(slot);
            at
        };
        self.index.insert(id, at);
    }

    fn remove(&mut self, id: UserId) {
        let Some(at) = self.index.remove(id) else {
            return;
        };
        if let Some(slot) = usize::try_from(at).ok().and_then(|i| self.slots.get(i)) {
            self.emails.garbage += slot.email.len as usize;
        }
        self.free.push(at);
        self.compact_if_due();
    }

    /// Rewrites the email arena without its garbage once that is most of it.
    fn compact_if_due(&mut self) {
        let e = &self.emails;
        if e.garbage < EMAIL_GARBAGE_BYTES || e.garbage * 2 < e.text.len() {
            return;
        }
        let mut emails = Emails {
            text: String::with_capacity(e.text.len() - e.garbage),
            garbage: 0,
        };
        for at in self.index.slots() {
            if let Some(slot) = usize::try_from(at).ok().and_then(|i| self.slots.get_mut(i)) {
                slot.email = emails.push(self.emails.get(slot.email));
            }
        }
        self.emails = emails;
    }
}

impl Emails {
    /// Appends `email`; an arena past 4 GiB (never, in practice) stores it as empty.
    fn push(&mut self, email: &str) -> Span {
        let span = u32::try_from(self.text.len())
            .ok()
            .zip(u32::try_from(email.len()).ok())
            .filter(|(at, len)| at.checked_add(*len).is_some());
        let Some((at, len)) = span else {
            tracing::error!("the in-memory email arena is full");
            return Span { at: 0, len: 0 };
        };
        self.text.push_str(email);
        Span { at, len }
    }

    fn get(&self, span: Span) -> &str {
        let (at, len) = (span.at as usize, span.len as usize);
        // Spans are made by `push`, on character boundaries.
        self.text.get(at..at + len).unwrap_or_default()
    }
}

impl RoleSets {
    fn intern(&mut self, roles: &[String]) -> u32 {
        if let Some(&id) = self.ids.get(roles) {
            return id;
        }
        let Ok(id) = u32::try_from(self.lists.len()) else {
            return 0;
        };
        let list: Arc<[String]> = Arc::from(roles);
        self.lists.push(Arc::clone(&list));
        self.ids.insert(list, id);
        id
    }

    fn get(&self, id: u32) -> Arc<[String]> {
        self.lists
            .get(id as usize)
            .map_or_else(|| Arc::from(Vec::new()), Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn user_change(id: UserId, email: &str, roles: &[&str], version: u64) -> Change {
        Change::User {
            id,
            token_version: version,
            disabled: false,
            facts: UserFacts {
                email: Arc::from(email),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            },
        }
    }

    fn ids() -> (UserId, FamilyId, Jti) {
        (UserId(Uuid::new_v4()), FamilyId::new(), Jti(Uuid::new_v4()))
    }

    #[test]
    fn a_reused_slot_does_not_inherit_the_deleted_users_sessions() {
        let view = View::default();
        let (ann, ann_session, jti) = ids();
        view.apply([
            user_change(ann, "ann@example.com", &["admin"], 0),
            Change::Family {
                id: ann_session,
                user: ann,
            },
        ]);
        assert_eq!(view.check_access(ann, ann_session, jti, 0), Ok(()));
        view.apply([Change::UserGone(ann), Change::FamilyGone(ann_session)]);
        let bob = UserId(Uuid::new_v4());
        view.apply([user_change(bob, "bob@example.com", &[], 0)]);
        assert_eq!(view.counts().users, 1);
        assert_eq!(
            view.check_access(ann, ann_session, jti, 0),
            Err(AccessDenied::UnknownUser)
        );
        assert_eq!(
            view.check_access(bob, ann_session, jti, 0),
            Err(AccessDenied::FamilyRevoked)
        );
        let facts = view.user_facts(bob).unwrap();
        assert_eq!((&*facts.email, facts.roles.len()), ("bob@example.com", 0));
        assert_eq!(view.user_facts(ann), None);
    }

    #[test]
    fn a_session_belongs_to_its_own_user_only() {
        let view = View::default();
        let (ann, session, jti) = ids();
        let bob = UserId(Uuid::new_v4());
        view.apply([
            user_change(ann, "ann@example.com", &[], 0),
            user_change(bob, "bob@example.com", &[], 0),
            Change::Family {
                id: session,
                user: ann,
            },
        ]);
        assert_eq!(
            view.check_access(bob, session, jti, 0),
            Err(AccessDenied::FamilyRevoked)
        );
        // A session for a user the view does not hold is refused, not granted.
        let ghost = UserId(Uuid::new_v4());
        let orphan = FamilyId::new();
        view.apply([Change::Family {
            id: orphan,
            user: ghost,
        }]);
        assert_eq!(
            view.check_access(ghost, orphan, jti, 0),
            Err(AccessDenied::UnknownUser)
        );
        assert_eq!(view.counts().families, 1);
    }

    #[test]
    fn changed_rows_keep_their_facts_through_the_arena_rewrite() {
        let view = View::default();
        let keep: Vec<UserId> = (0..10).map(|_| UserId(Uuid::new_v4())).collect();
        for (i, id) in keep.iter().enumerate() {
            view.apply([user_change(
                *id,
                &format!("keep{i}@example.com"),
                &["ops"],
                0,
            )]);
        }
        // Enough deleted users and changed emails to make most of the arena garbage (over
        // EMAIL_GARBAGE_BYTES), so it is rewritten at least once.
        let gone: Vec<UserId> = (0..40_000).map(|_| UserId(Uuid::new_v4())).collect();
        view.apply(
            gone.iter()
                .enumerate()
                .map(|(i, id)| user_change(*id, &format!("someone-{i:08}@example.com"), &[], 0)),
        );
        view.apply(gone.iter().map(|id| Change::UserGone(*id)));
        for (i, id) in keep.iter().enumerate() {
            view.apply([user_change(
                *id,
                &format!("renamed{i}@example.com"),
                &["ops", "dev"],
                3,
            )]);
        }
        let m = view.inner.read().unwrap();
        assert!(m.users.emails.text.len() < EMAIL_GARBAGE_BYTES, "rewritten");
        drop(m);
        assert_eq!(view.counts().users, 10);
        for (i, id) in keep.iter().enumerate() {
            let facts = view.user_facts(*id).unwrap();
            assert_eq!(&*facts.email, format!("renamed{i}@example.com"));
            assert_eq!(&*facts.roles, ["ops".to_owned(), "dev".to_owned()]);
            assert_eq!(view.token_version(*id), Some(3));
        }
    }

    #[test]
    fn equal_role_lists_are_kept_once() {
        let view = View::default();
        for _ in 0..100 {
            view.apply([user_change(
                UserId(Uuid::new_v4()),
                "a@example.com",
                &["x", "y"],
                0,
            )]);
        }
        let m = view.inner.read().unwrap();
        assert_eq!(m.users.roles.lists.len(), 1);
    }

    /// Users and sessions in any order (as PostgreSQL may give them), sessions of users that
    /// are not there, and more than one session per user: each session maps to its own user.
    #[test]
    fn the_builder_maps_each_session_to_its_user() {
        let users: Vec<UserId> = (0..300).map(|_| UserId(Uuid::new_v4())).collect();
        for sorted in [false, true] {
            let mut users = users.clone();
            if sorted {
                users.sort();
            }
            let mut builder = Builder::new(users.len(), 0);
            for (i, id) in users.iter().enumerate() {
                let version = u64::try_from(i).unwrap();
                builder.user(*id, version, i % 7 == 0, &format!("u{i}@example.com"), &[]);
            }
            let mut mine = Vec::new();
            let mut live = LiveSessions::with_capacity(0);
            for (i, id) in users.iter().enumerate().rev() {
                for _ in 0..i % 3 {
                    let family = FamilyId(Uuid::new_v4());
                    live.push(family, *id);
                    mine.push((family, *id, i));
                }
            }
            let ghost = UserId(Uuid::new_v4());
            let orphan = FamilyId(Uuid::new_v4());
            live.push(orphan, ghost);
            if sorted {
                live.sort();
            }
            builder.sessions(live);
            let view = builder.finish();
            assert_eq!(view.counts().users, users.len());
            assert_eq!(view.counts().families, mine.len());
            let jti = Jti(Uuid::new_v4());
            for (family, user, i) in mine {
                let version = u64::try_from(i).unwrap();
                let want = if i % 7 == 0 {
                    Err(AccessDenied::UserDisabled)
                } else {
                    Ok(())
                };
                assert_eq!(view.check_access(user, family, jti, version), want);
                assert_eq!(
                    &*view.user_facts(user).unwrap().email,
                    format!("u{i}@example.com")
                );
                let other = users[(i + 1) % users.len()];
                assert_ne!(
                    view.check_access(other, family, jti, u64::MAX),
                    Ok(()),
                    "another user's session"
                );
            }
            assert_eq!(
                view.check_access(ghost, orphan, jti, 0),
                Err(AccessDenied::UnknownUser)
            );
        }
    }

    /// Users read at open, then deleted, re-created and added: each id finds its own slot,
    /// never a slot another user took over, through the arena's rewrite too.
    #[test]
    fn loaded_users_keep_their_slots_through_deletes_and_reuse() {
        let loaded: Vec<UserId> = (0..40_000).map(|_| UserId(Uuid::new_v4())).collect();
        let mut sorted = loaded.clone();
        sorted.sort();
        let mut builder = Builder::new(sorted.len(), 0);
        for (i, id) in sorted.iter().enumerate() {
            let email = format!("someone-{i:08}@example.com");
            builder.user(*id, u64::try_from(i).unwrap(), false, &email, &[]);
        }
        let (ann, session, jti) = (sorted[123], FamilyId::new(), Jti(Uuid::new_v4()));
        builder.family(session, ann);
        let view = builder.finish();
        for (i, id) in sorted.iter().enumerate() {
            assert_eq!(view.token_version(*id), Some(u64::try_from(i).unwrap()));
        }
        assert_eq!(view.token_version(UserId(Uuid::new_v4())), None);
        assert_eq!(view.check_access(ann, session, jti, 123), Ok(()));
        // Ann goes; Bob, new, takes her slot; her session and tokens stay refused.
        view.apply([Change::UserGone(ann), Change::FamilyGone(session)]);
        let bob = UserId(Uuid::new_v4());
        view.apply([user_change(bob, "bob@example.com", &[], 0)]);
        view.apply([Change::Family {
            id: session,
            user: ann,
        }]);
        assert_eq!(view.token_version(ann), None);
        assert_eq!(
            view.check_access(ann, session, jti, 123),
            Err(AccessDenied::UnknownUser)
        );
        assert_eq!(&*view.user_facts(bob).unwrap().email, "bob@example.com");
        // Ann comes back under her old id (a restore): a slot of her own again.
        view.apply([user_change(ann, "ann@example.com", &["x"], 9)]);
        assert_eq!(view.token_version(ann), Some(9));
        assert_eq!(&*view.user_facts(bob).unwrap().email, "bob@example.com");
        assert_eq!(view.counts().users, sorted.len() + 1);
        // Most loaded users go and the rest change their email: the arena is rewritten and
        // every user still there keeps its own facts.
        let (keep, gone) = sorted.split_at(10);
        view.apply(
            gone.iter()
                .filter(|id| **id != ann)
                .map(|id| Change::UserGone(*id)),
        );
        for (i, id) in keep.iter().enumerate() {
            view.apply([user_change(
                *id,
                &format!("kept{i}@example.com"),
                &["ops"],
                3,
            )]);
        }
        let m = view.inner.read().unwrap();
        assert!(m.users.emails.text.len() < EMAIL_GARBAGE_BYTES, "rewritten");
        drop(m);
        assert_eq!(view.counts().users, keep.len() + 2);
        for (i, id) in keep.iter().enumerate() {
            assert_eq!(
                &*view.user_facts(*id).unwrap().email,
                format!("kept{i}@example.com")
            );
        }
        assert_eq!(&*view.user_facts(ann).unwrap().email, "ann@example.com");
        assert_eq!(&*view.user_facts(bob).unwrap().email, "bob@example.com");
        assert_eq!(view.user_facts(gone[5]), None);
    }

    #[test]
    fn the_builder_sees_what_apply_would() {
        let (ann, session, jti) = ids();
        let mut builder = Builder::new(1, 1);
        builder.user(ann, 2, false, "ann@example.com", &["admin".to_owned()]);
        builder.family(session, ann);
        builder.change(Change::Blacklisted { jti, exp: 10 });
        let view = builder.finish();
        assert_eq!(
            view.check_access(ann, session, jti, 2),
            Err(AccessDenied::Blacklisted)
        );
        let other = Jti(Uuid::new_v4());
        assert_eq!(view.check_access(ann, session, other, 2), Ok(()));
        assert_eq!(
            view.check_access(ann, session, other, 1),
            Err(AccessDenied::StaleVersion)
        );
        assert_eq!(&*view.user_facts(ann).unwrap().roles, ["admin".to_owned()]);
    }
}
