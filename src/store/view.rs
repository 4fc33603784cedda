//! The in-memory mirror of what request checks need: users' token versions, disabled flags,
//! emails and roles; live sessions (and the cookies of browser sessions); the blacklist. It
//! follows disk and never leads it: a change is applied only after the transaction that made
//! it has committed. The one exception is a browser session's last use, which only memory
//! tracks request by request (see [`View::check_browser`]).

use std::collections::HashMap;
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
    users: HashMap<UserId, UserState>,
    /// Families that exist and are not revoked.
    families: HashMap<FamilyId, UserId>,
    /// Live browser sessions by the SHA-256 of their cookie.
    browser: HashMap<[u8; 32], BrowserEntry>,
    browser_by_family: HashMap<FamilyId, [u8; 32]>,
    blacklist: HashMap<Jti, i64>,
}

struct UserState {
    token_version: u64,
    disabled: bool,
    facts: UserFacts,
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

/// A refresh of a session's last use on disk is asked for once it lags memory by this share
/// of the idle window: a restart then takes at most that share from the session.
const TOUCH_FRACTION: i64 = 4;
/// Ask again after this long if a refresh did not reach disk (a failed write).
const TOUCH_RETRY_SECS: i64 = 60;

impl View {
    pub(super) fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        // A panic while holding the lock cannot leave a half-applied change worse than the
        // missing one, so a poisoned lock is still usable.
        let mut m = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            match change {
                Change::User {
                    id,
                    token_version,
                    disabled,
                    facts,
                } => {
                    m.users.insert(
                        id,
                        UserState {
                            token_version,
                            disabled,
                            facts,
                        },
                    );
                }
                Change::UserGone(id) => {
                    m.users.remove(&id);
                }
                Change::Family { id, user } => {
                    m.families.insert(id, user);
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
                    m.browser_by_family.insert(family, cookie_hash);
                    m.browser.insert(
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
                    m.families.remove(&id);
                    if let Some(hash) = m.browser_by_family.remove(&id) {
                        m.browser.remove(&hash);
                    }
                }
                Change::Touched { family, at } => {
                    if let Some(entry) = m
                        .browser_by_family
                        .get(&family)
                        .and_then(|h| m.browser.get(h))
                    {
                        entry.persisted.fetch_max(at, Ordering::Relaxed);
                    }
                }
                Change::Blacklisted { jti, exp } => {
                    m.blacklist.insert(jti, exp);
                }
                Change::Unblacklisted(jti) => {
                    m.blacklist.remove(&jti);
                }
            }
        }
    }

    pub(super) fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let state = m.users.get(&user).ok_or(AccessDenied::UnknownUser)?;
        if state.disabled {
            return Err(AccessDenied::UserDisabled);
        }
        if version < state.token_version {
            return Err(AccessDenied::StaleVersion);
        }
        if m.families.get(&family) != Some(&user) {
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
        let state = m.users.get(&entry.user).ok_or(AccessDenied::UnknownUser)?;
        if state.disabled {
            return Err(AccessDenied::UserDisabled);
        }
        if m.families.get(&entry.family) != Some(&entry.user) {
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
            facts: state.facts.clone(),
            mfa: entry.mfa,
            touch_due,
        })
    }

    pub(super) fn user_facts(&self, user: UserId) -> Option<UserFacts> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.users.get(&user).map(|s| s.facts.clone())
    }

    pub(super) fn is_blacklisted(&self, jti: Jti) -> bool {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.blacklist.contains_key(&jti)
    }

    pub(super) fn token_version(&self, user: UserId) -> Option<u64> {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        m.users.get(&user).map(|s| s.token_version)
    }

    pub(super) fn counts(&self) -> Counts {
        let m = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Counts {
            users: m.users.len(),
            families: m.families.len(),
            blacklist: m.blacklist.len(),
        }
    }
}
