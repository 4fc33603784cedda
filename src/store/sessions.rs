//! Refresh-token families: creation, rotation as a compare-and-swap with reuse detection
//! (RFC 9700 §4.14.2) and a retry grace, and revocation.
//!
//! A family row has a constant size however often it rotates: it keeps the current token's
//! hash and the hash of the one token it superseded (plus that token's sealed successor, for
//! the grace). Older tokens are recognized as superseded from the generation number inside the
//! token, which the auth layer has already authenticated with its MAC.

use redb::{ReadableTable, Table, WriteTransaction};
use uuid::Uuid;

use super::records::{decode, encode, Current, FamilyRecord, Previous, UserRecord};
use super::tables::{FAMILIES, FAMILIES_BY_USER, USERS};
use super::users::{families_of, read_user, user_change};
use super::{
    Change, FamilyId, Presented, Rotation, SessionPolicy, Store, StoreError, Successor, User,
    UserId, Written,
};
use crate::time::UnixTime;

impl Store {
    /// A fresh family id, for the caller to mint the first token with before calling
    /// [`Store::create_family`]: a version 7 UUID, so ids sort in the order sessions were
    /// opened (in one process), which is what "revoke the oldest" and "newest first" go by
    /// within one second. It says when the session began, which the access token's `iat`
    /// says anyway; nothing relies on it being unguessable.
    pub fn new_family_id() -> FamilyId {
        FamilyId(Uuid::now_v7())
    }

    /// Starts a refresh family for `seen` whose generation-0 token hashes to `first_hash`.
    ///
    /// `seen` is the user as read when the credentials were checked. A login verifies its
    /// password for hundreds of milliseconds; if in that time the user was disabled, deleted,
    /// revoked (token version bumped) or given a new password, the session is not created and
    /// this returns false, writing nothing: a login that started before a password change or
    /// logout-all cannot outlive it.
    ///
    /// # Errors
    /// `FamilyExists` if `family` is already stored.
    pub fn create_family(
        &self,
        family: FamilyId,
        seen: &User,
        first_hash: &[u8; 32],
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<bool, StoreError> {
        let user = seen.id;
        self.write(|txn| {
            let unchanged = read_user(&txn.open_table(USERS)?, user)?.is_some_and(|now_user| {
                !now_user.disabled
                    && now_user.token_version == seen.token_version
                    && now_user.password_hash == seen.password_hash
            });
            if !unchanged {
                return Ok(Written::nothing(false));
            }
            let mut families = txn.open_table(FAMILIES)?;
            if families.get(family.0.as_u128())?.is_some() {
                return Err(StoreError::FamilyExists);
            }
            let mut changes = vec![Change::Family { id: family, user }];
            for oldest in over_the_cap(txn, &families, user, now, policy.max_per_user)? {
                if revoke_in(&mut families, oldest, now)? {
                    changes.push(Change::FamilyGone(oldest));
                }
            }
            let max = now.plus(policy.session_max_secs);
            let rec = FamilyRecord {
                user: user.0,
                created_at: now.secs(),
                expires_at_max: max.secs(),
                current: Current {
                    generation: 0,
                    hash: *first_hash,
                    expires_at: now.plus(policy.refresh_ttl_secs).min(max).secs(),
                },
                previous: None,
                revoked_at: None,
            };
            families.insert(family.0.as_u128(), encode(&rec).as_slice())?;
            txn.open_multimap_table(FAMILIES_BY_USER)?
                .insert(user.0.as_u128(), family.0.as_u128())?;
            Ok(Written::commit_with(true, changes))
        })
    }

    /// Rotates a presented refresh token, as one compare-and-swap: of several concurrent
    /// rotations of one token, exactly one installs its successor.
    ///
    /// In order: no family -> `Unknown`; revoked -> `Revoked`; the current token -> `Expired`
    /// past its sliding or absolute expiry, else `next` becomes current (`Rotated`); the token
    /// the current one superseded, less than `grace_secs` ago -> `Retried` with the stored
    /// sealed successor (`Expired` if the family expired); any other older generation -> the
    /// family is revoked (`Reused`); anything else -> `Unknown`.
    pub fn rotate(
        &self,
        presented: &Presented,
        next: &Successor,
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<Rotation, StoreError> {
        self.write(|txn| {
            let mut families = txn.open_table(FAMILIES)?;
            let Some(mut rec) = read_family(&families, presented.family)? else {
                return Ok(Written::nothing(Rotation::Unknown));
            };
            if rec.revoked_at.is_some() {
                return Ok(Written::nothing(Rotation::Revoked));
            }
            let family = presented.family;
            let user = UserId(rec.user);
            let expired = now.secs() >= rec.current.expires_at || now.secs() >= rec.expires_at_max;
            let current = &rec.current;
            if presented.generation == current.generation {
                if !hashes_equal(&presented.hash, &current.hash) {
                    return Ok(Written::nothing(Rotation::Unknown));
                }
                if expired {
                    return Ok(Written::nothing(Rotation::Expired));
                }
                let generation = current.generation.saturating_add(1);
                rec.previous = Some(Previous {
                    hash: presented.hash,
                    rotated_at: now.secs(),
                    sealed: next.sealed,
                });
                rec.current = Current {
                    generation,
                    hash: next.hash,
                    expires_at: now
                        .plus(policy.refresh_ttl_secs)
                        .secs()
                        .min(rec.expires_at_max),
                };
                families.insert(family.0.as_u128(), encode(&rec).as_slice())?;
                return Ok(Written::commit(Rotation::Rotated {
                    family,
                    user,
                    generation,
                }));
            }
            if presented.generation > current.generation {
                return Ok(Written::nothing(Rotation::Unknown));
            }
            if let Some(prev) = &rec.previous {
                let in_grace = now.secs().saturating_sub(prev.rotated_at) < policy.grace_secs;
                if presented.generation.saturating_add(1) == current.generation
                    && hashes_equal(&presented.hash, &prev.hash)
                    && in_grace
                {
                    if expired {
                        return Ok(Written::nothing(Rotation::Expired));
                    }
                    return Ok(Written::nothing(Rotation::Retried {
                        family,
                        user,
                        generation: current.generation,
                        sealed: prev.sealed,
                    }));
                }
            }
            // A genuine (MAC-checked) token of an older generation: it was stolen or replayed.
            rec.revoked_at = Some(now.secs());
            families.insert(family.0.as_u128(), encode(&rec).as_slice())?;
            Ok(Written::commit_with(
                Rotation::Reused { family, user },
                vec![Change::FamilyGone(family)],
            ))
        })
    }

    /// Revokes one family (logout). Returns false if it was missing or already revoked.
    pub fn revoke_family(&self, family: FamilyId, now: UnixTime) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut families = txn.open_table(FAMILIES)?;
            if revoke_in(&mut families, family, now)? {
                Ok(Written::commit_with(true, vec![Change::FamilyGone(family)]))
            } else {
                Ok(Written::nothing(false))
            }
        })
    }

    /// Bumps the user's token version and revokes every family of the user (logout-all).
    /// Returns false if there is no such user.
    pub fn revoke_all_for_user(&self, user: UserId, now: UnixTime) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(mut row) = read_user(&users, user)? else {
                return Ok(Written::nothing(false));
            };
            row.token_version = row.token_version.saturating_add(1);
            users.insert(
                user.0.as_u128(),
                encode(&UserRecord::from_user(&row)).as_slice(),
            )?;
            let mut changes = vec![user_change(&row)];
            let ids = families_of(txn, user)?;
            let mut families = txn.open_table(FAMILIES)?;
            for family in ids {
                if revoke_in(&mut families, family, now)? {
                    changes.push(Change::FamilyGone(family));
                }
            }
            Ok(Written::commit_with(true, changes))
        })
    }
}

impl Store {
    /// Replaces the user's password hash and revokes every family of the user except `keep`
    /// (the session that changed the password), in one transaction: a crash cannot leave the
    /// new password in place with the old sessions still alive. Access tokens of the revoked
    /// families stop working at once through their family.
    ///
    /// A compare-and-swap: it writes nothing and returns false unless the stored hash is still
    /// `expected` (the one the current password was checked against), the user is enabled, and
    /// `keep` is still live. So a change checked before a concurrent password change, logout-
    /// all, revocation or disable commits cannot land after it.
    pub fn change_password(
        &self,
        user: UserId,
        expected: &str,
        password_hash: &str,
        keep: Option<FamilyId>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(mut row) = read_user(&users, user)? else {
                return Ok(Written::nothing(false));
            };
            if row.disabled || row.password_hash != expected {
                return Ok(Written::nothing(false));
            }
            if let Some(keep) = keep {
                let kept = read_family(&txn.open_table(FAMILIES)?, keep)?;
                if !kept.is_some_and(|f| f.revoked_at.is_none() && f.user == user.0) {
                    return Ok(Written::nothing(false));
                }
            }
            password_hash.clone_into(&mut row.password_hash);
            users.insert(
                user.0.as_u128(),
                encode(&UserRecord::from_user(&row)).as_slice(),
            )?;
            let mut changes = Vec::new();
            let ids = families_of(txn, user)?;
            let mut families = txn.open_table(FAMILIES)?;
            for family in ids.into_iter().filter(|f| Some(*f) != keep) {
                if revoke_in(&mut families, family, now)? {
                    changes.push(Change::FamilyGone(family));
                }
            }
            Ok(Written::commit_with(true, changes))
        })
    }
}

/// The live sessions of `user` to revoke so that one more fits under `max`: the oldest first.
fn over_the_cap(
    txn: &WriteTransaction,
    families: &Table<'_, u128, &'static [u8]>,
    user: UserId,
    now: UnixTime,
    max: usize,
) -> Result<Vec<FamilyId>, StoreError> {
    let mut live = Vec::new();
    for id in families_of(txn, user)? {
        if let Some(rec) = read_family(families, id)? {
            let ended = now.secs() >= rec.current.expires_at || now.secs() >= rec.expires_at_max;
            if rec.revoked_at.is_none() && !ended {
                live.push((rec.created_at, id));
            }
        }
    }
    let excess = (live.len() + 1).saturating_sub(max.max(1));
    live.sort_unstable();
    Ok(live.into_iter().take(excess).map(|(_, id)| id).collect())
}

/// Marks a family revoked inside `families`; false if it was missing or already revoked.
fn revoke_in(
    families: &mut Table<'_, u128, &'static [u8]>,
    family: FamilyId,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let Some(mut rec) = read_family(families, family)? else {
        return Ok(false);
    };
    if rec.revoked_at.is_some() {
        return Ok(false);
    }
    rec.revoked_at = Some(now.secs());
    families.insert(family.0.as_u128(), encode(&rec).as_slice())?;
    Ok(true)
}

/// Reads one family row.
pub(super) fn read_family(
    families: &impl ReadableTable<u128, &'static [u8]>,
    family: FamilyId,
) -> Result<Option<FamilyRecord>, StoreError> {
    let row = families.get(family.0.as_u128())?;
    row.map(|bytes| decode("families", bytes.value()))
        .transpose()
}

/// Compares two hashes without an early exit, so timing does not reveal the matching prefix.
fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
