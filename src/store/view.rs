//! The in-memory mirror of what access-token checks need: users' token versions and disabled
//! flags, live families, and the blacklist. It follows disk and never leads it: a change is
//! applied only after the transaction that made it has committed.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::{AccessDenied, Counts, FamilyId, Jti, UserId};

/// One committed change to mirror.
#[derive(Debug)]
pub(super) enum Change {
    User {
        id: UserId,
        token_version: u64,
        disabled: bool,
    },
    UserGone(UserId),
    Family {
        id: FamilyId,
        user: UserId,
    },
    FamilyGone(FamilyId),
    Blacklisted {
        jti: Jti,
        exp: i64,
    },
    Unblacklisted(Jti),
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
    blacklist: HashMap<Jti, i64>,
}

#[derive(Clone, Copy)]
struct UserState {
    token_version: u64,
    disabled: bool,
}

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
                } => {
                    m.users.insert(
                        id,
                        UserState {
                            token_version,
                            disabled,
                        },
                    );
                }
                Change::UserGone(id) => {
                    m.users.remove(&id);
                }
                Change::Family { id, user } => {
                    m.families.insert(id, user);
                }
                Change::FamilyGone(id) => {
                    m.families.remove(&id);
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
