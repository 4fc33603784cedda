//! Refresh-token families: opening, rotation as a compare-and-swap with reuse detection
//! (RFC 9700 §4.14.2) and a retry grace, password changes, and revocation.
//!
//! A family row has a constant size however often it rotates: it keeps the current token's
//! hash and the hash of the one token it superseded (plus that token's sealed successor, for
//! the grace). Older tokens are recognized as superseded from the generation number inside the
//! token, which the auth layer has already authenticated with its MAC.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::records::{user_family_key, BrowserRecord, Current, FamilyRecord, Previous, RowKey};
use super::tables::{Bytes, Table, BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, USERS};
use super::users::{families_in, families_of, read_user, user_change, write_user};
use super::{family_row, totp, Change, StoreError, Written};
use crate::model::{
    FamilyId, NewSession, Presented, RefreshStanding, Rotation, SessionInfo, SessionKind,
    SessionPolicy, Successor, User, UserId,
};
use crate::time::UnixTime;

/// Starts family `family` for `seen`, whose generation-0 token hashes to `first_hash`, unless
/// the user changed since `seen` was read (disabled, deleted, revoked, new password) or has
/// TOTP on and `session` did not pass a second factor: then nothing is written and the answer
/// is `false`. Revokes the user's oldest live sessions past `policy.max_per_user`.
///
/// # Errors
/// `FamilyExists` if `family` is already stored.
pub(super) fn open_in(
    txn: &WriteTransaction,
    family: FamilyId,
    seen: &User,
    first_hash: &[u8; 32],
    session: &NewSession,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<Written<bool>, StoreError> {
    let unchanged = read_user(&txn.open_table(USERS)?, seen.id)?.is_some_and(|now_user| {
        !now_user.disabled
            && now_user.token_version == seen.token_version
            && now_user.password_hash == seen.password_hash
    });
    if !unchanged || (!session.mfa && totp::is_on_in(txn, seen.id)?) {
        return Ok(Written::nothing(false));
    }
    let changes = open_checked_in(txn, family, seen.id, first_hash, session, now, policy)?;
    Ok(Written::commit_with(true, changes))
}

/// Writes family `family` of `user`, whose standing the caller has checked in this
/// transaction, revoking the user's oldest live sessions past the cap; returns the view
/// changes.
///
/// # Errors
/// `FamilyExists` if `family` (or a browser session's cookie) is already stored.
pub(super) fn open_checked_in(
    txn: &WriteTransaction,
    family: FamilyId,
    user: UserId,
    first_hash: &[u8; 32],
    session: &NewSession,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<Vec<Change>, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    if families.get(family.key())?.is_some() {
        return Err(StoreError::FamilyExists);
    }
    let mut changes = vec![Change::Family { id: family, user }];
    for oldest in over_the_cap(txn, &families, user, now, policy.max_per_user)? {
        if revoke_in(&mut families, oldest, now)?.is_some() {
            changes.push(Change::FamilyGone(oldest));
        }
    }
    let rec = new_record(user, first_hash, session, now, policy);
    write_family(&mut families, family, &rec)?;
    txn.open_table(FAMILIES_BY_USER)?
        .insert(user_family_key(user, family).as_slice(), [].as_slice())?;
    let cookie_taken = rec.browser.is_some()
        && txn
            .open_table(BROWSER_SESSIONS)?
            .insert(first_hash.as_slice(), family.key())?
            .is_some();
    if cookie_taken {
        return Err(StoreError::FamilyExists); // the same cookie twice: the RNG failed
    }
    changes.extend(browser_change(family, &rec));
    Ok(changes)
}

/// The record of a new session of `user` opened at `now`, whose first token (refresh token or
/// cookie) hashes to `first_hash`.
pub(super) fn new_record(
    user: UserId,
    first_hash: &[u8; 32],
    session: &NewSession,
    now: UnixTime,
    policy: &SessionPolicy,
) -> FamilyRecord {
    let max = now.plus(policy.session_max_secs);
    FamilyRecord {
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
        kind: session.kind,
        mfa: session.mfa,
        browser: (session.kind == SessionKind::Browser).then_some(BrowserRecord {
            idle_secs: policy.idle_secs,
            last_used_at: now.secs(),
        }),
        user_agent: session.origin.user_agent.clone(),
        client_ip: session.origin.client_ip,
    }
}

/// Rotates a presented refresh token; see [`Storage::rotate`](crate::auth::storage::Storage::rotate).
pub(super) fn rotate_in(
    txn: &WriteTransaction,
    presented: &Presented,
    next: &Successor,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<Written<Rotation>, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    let Some(mut rec) = read_family(&families, presented.family)? else {
        return Ok(Written::nothing(Rotation::Unknown));
    };
    let users = txn.open_table(USERS)?;
    let (rotation, write) = decide_rotation(
        &mut rec,
        |id| read_user(&users, id),
        presented,
        next,
        now,
        policy,
    )?;
    if !write {
        return Ok(Written::nothing(rotation));
    }
    write_family(&mut families, presented.family, &rec)?;
    let changes = match rotation {
        Rotation::Reused { family, .. } => vec![Change::FamilyGone(family)],
        _ => Vec::new(),
    };
    Ok(Written::commit_with(rotation, changes))
}

/// The rotation of `presented` against its session's record `rec`, changed in place, and
/// whether `rec` must be written back (a successor installed, or the session revoked for a
/// reused token). `user` reads the session's user as of the same transaction; it is called
/// only for a live API session. Both backends decide a rotation here.
pub(super) fn decide_rotation(
    rec: &mut FamilyRecord,
    user: impl FnOnce(UserId) -> Result<Option<User>, StoreError>,
    presented: &Presented,
    next: &Successor,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<(Rotation, bool), StoreError> {
    let nothing = |rotation| Ok((rotation, false));
    if rec.revoked_at.is_some() {
        return nothing(Rotation::Revoked);
    }
    if rec.kind != SessionKind::Api {
        // A browser session has a cookie, not refresh tokens.
        return nothing(Rotation::Unknown);
    }
    let family = presented.family;
    // The user as of this transaction: a rotation must not land (nor a retry be answered) for
    // a user disabled or deleted since the session began.
    let Some(user) = user(UserId(rec.user))? else {
        return nothing(Rotation::Unknown);
    };
    if user.disabled {
        return nothing(Rotation::Revoked);
    }
    let expired = now.secs() >= rec.current.expires_at || now.secs() >= rec.expires_at_max;
    let current = &rec.current;
    if presented.generation == current.generation {
        if !hashes_equal(&presented.hash, &current.hash) {
            return nothing(Rotation::Unknown);
        }
        if expired {
            return nothing(Rotation::Expired);
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
        let rotated = Rotation::Rotated {
            family,
            user,
            generation,
            mfa: rec.mfa,
        };
        return Ok((rotated, true));
    }
    if presented.generation > current.generation {
        return nothing(Rotation::Unknown);
    }
    if let Some(prev) = &rec.previous {
        let in_grace = now.secs().saturating_sub(prev.rotated_at) < policy.grace_secs;
        if presented.generation.saturating_add(1) == current.generation
            && hashes_equal(&presented.hash, &prev.hash)
            && in_grace
        {
            if expired {
                return nothing(Rotation::Expired);
            }
            return nothing(Rotation::Retried {
                family,
                generation: current.generation,
                sealed: prev.sealed,
                user,
                mfa: rec.mfa,
            });
        }
    }
    // A genuine (MAC-checked) token of an older generation: it was stolen or replayed.
    rec.revoked_at = Some(now.secs());
    let reused = Rotation::Reused {
        family,
        user: user.id,
    };
    Ok((reused, true))
}

/// Writes that browser session `family` was used at `at`, if that is later than what is
/// stored; a revoked or missing session is left alone.
pub(super) fn touch_in(
    txn: &WriteTransaction,
    family: FamilyId,
    at: UnixTime,
) -> Result<Written<()>, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    let Some(mut rec) = read_family(&families, family)? else {
        return Ok(Written::nothing(()));
    };
    if !touch_record(&mut rec, at) {
        return Ok(Written::nothing(()));
    }
    write_family(&mut families, family, &rec)?;
    Ok(Written::commit_with(
        (),
        vec![Change::Touched {
            family,
            at: at.secs(),
        }],
    ))
}

/// Records in `rec` that its browser session was used at `at`: whether that changed it (a
/// live browser session last used earlier).
pub(super) fn touch_record(rec: &mut FamilyRecord, at: UnixTime) -> bool {
    match &mut rec.browser {
        Some(b) if rec.revoked_at.is_none() && b.last_used_at < at.secs() => {
            b.last_used_at = at.secs();
            true
        }
        _ => false,
    }
}

/// The live sessions of `user` at `now`, newest first, read in one read transaction.
pub(super) fn list_in(
    txn: &ReadTransaction,
    user: UserId,
    now: UnixTime,
) -> Result<Vec<SessionInfo>, StoreError> {
    let index = txn.open_table(FAMILIES_BY_USER)?;
    let families = txn.open_table(FAMILIES)?;
    let mut out = Vec::new();
    for id in families_in(&index, user)? {
        if let Some(rec) = read_family(&families, id)? {
            if rec.user == user.0 && now.secs() < rec.ended_at() {
                out.push(rec.info(id));
            }
        }
    }
    newest_first(&mut out);
    Ok(out)
}

/// Sorts a session list as its owner sees it: newest first.
pub(super) fn newest_first(sessions: &mut [SessionInfo]) {
    // Family ids are UUID v7: within one second they sort in the order sessions began.
    sessions.sort_unstable_by_key(|s| std::cmp::Reverse((s.created_at, s.id.0)));
}

/// Revokes session `family` if it is a live session of `user`; false (nothing written)
/// otherwise, so that one user cannot learn of or end another's sessions.
pub(super) fn end_own_in(
    txn: &WriteTransaction,
    user: UserId,
    family: FamilyId,
    now: UnixTime,
) -> Result<Written<bool>, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    let live = read_family(&families, family)?
        .is_some_and(|rec| rec.user == user.0 && now.secs() < rec.ended_at());
    if live && revoke_in(&mut families, family, now)?.is_some() {
        return Ok(Written::commit_with(true, vec![Change::FamilyGone(family)]));
    }
    Ok(Written::nothing(false))
}

/// How the presented refresh token stands, read without writing anything: `Some` only when it
/// is the current token of a live API session of an enabled user, as a rotation now would
/// accept it (a superseded token, even inside the retry grace, is not).
pub(super) fn standing_in(
    txn: &ReadTransaction,
    presented: &Presented,
    now: UnixTime,
) -> Result<Option<RefreshStanding>, StoreError> {
    let Some(rec) = read_family(&txn.open_table(FAMILIES)?, presented.family)? else {
        return Ok(None);
    };
    if !is_current(&rec, presented, now) {
        return Ok(None);
    }
    let enabled =
        read_user(&txn.open_table(USERS)?, UserId(rec.user))?.is_some_and(|u| !u.disabled);
    Ok(enabled.then(|| standing_of(&rec, presented.family)))
}

/// The standing of session `family`'s current token, which [`is_current`] accepted.
pub(super) fn standing_of(rec: &FamilyRecord, family: FamilyId) -> RefreshStanding {
    RefreshStanding {
        user: UserId(rec.user),
        family,
        expires_at: UnixTime(rec.current.expires_at.min(rec.expires_at_max)),
    }
}

/// Revokes the session of the presented refresh token if it is that session's current token
/// (RFC 7009): a superseded token revokes nothing, so that presenting a stolen old token here
/// cannot end the victim's session (reuse detection is the refresh endpoint's job). Answers
/// the session's user when it revoked.
pub(super) fn revoke_current_in(
    txn: &WriteTransaction,
    presented: &Presented,
    now: UnixTime,
) -> Result<Written<Option<UserId>>, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    let Some(rec) = read_family(&families, presented.family)? else {
        return Ok(Written::nothing(None));
    };
    if !is_current(&rec, presented, now)
        || revoke_in(&mut families, presented.family, now)?.is_none()
    {
        return Ok(Written::nothing(None));
    }
    Ok(Written::commit_with(
        Some(UserId(rec.user)),
        vec![Change::FamilyGone(presented.family)],
    ))
}

/// Whether `presented` is the current, unexpired token of `rec`, a live API session.
pub(super) fn is_current(rec: &FamilyRecord, presented: &Presented, now: UnixTime) -> bool {
    rec.revoked_at.is_none()
        && rec.kind == SessionKind::Api
        && presented.generation == rec.current.generation
        && hashes_equal(&presented.hash, &rec.current.hash)
        && now.secs() < rec.current.expires_at
        && now.secs() < rec.expires_at_max
}

/// The view change that mirrors a live browser session's cookie, if `rec` is one.
pub(super) fn browser_change(family: FamilyId, rec: &FamilyRecord) -> Option<Change> {
    let browser = rec.browser?;
    Some(Change::Browser {
        cookie_hash: rec.current.hash,
        family,
        user: UserId(rec.user),
        mfa: rec.mfa,
        expires_at_max: rec.expires_at_max,
        idle_secs: browser.idle_secs,
        last_used_at: browser.last_used_at,
    })
}

/// Bumps `user`'s token version, writes its row, and revokes every family of the user: all its
/// access and refresh tokens stop working. Returns the view changes.
pub(super) fn revoke_all_in(
    txn: &WriteTransaction,
    users: &mut Table<'_>,
    user: &mut User,
    now: UnixTime,
) -> Result<Vec<Change>, StoreError> {
    user.token_version = user.token_version.saturating_add(1);
    write_user(users, user)?;
    let mut changes = vec![user_change(user)];
    let ids = families_of(txn, user.id)?;
    let mut families = txn.open_table(FAMILIES)?;
    for family in ids {
        if revoke_in(&mut families, family, now)?.is_some() {
            changes.push(Change::FamilyGone(family));
        }
    }
    Ok(changes)
}

/// Replaces the user's password hash and revokes every family of the user except `keep` (the
/// session that changed the password), in one transaction: a crash cannot leave the new
/// password in place with the old sessions still alive.
///
/// A compare-and-swap: it writes nothing and answers false unless the stored hash is still
/// `expected` (the one the current password was checked against), the user is enabled, and
/// `keep` is still live. So a change checked before a concurrent password change, logout-all,
/// revocation or disable commits cannot land after it.
pub(super) fn change_password_in(
    txn: &WriteTransaction,
    user: UserId,
    expected: &str,
    password_hash: &str,
    keep: Option<FamilyId>,
    now: UnixTime,
) -> Result<Written<bool>, StoreError> {
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
    write_user(&mut users, &row)?;
    let mut changes = Vec::new();
    let ids = families_of(txn, user)?;
    let mut families = txn.open_table(FAMILIES)?;
    for family in ids.into_iter().filter(|f| Some(*f) != keep) {
        if revoke_in(&mut families, family, now)?.is_some() {
            changes.push(Change::FamilyGone(family));
        }
    }
    Ok(Written::commit_with(true, changes))
}

/// The live sessions of `user` to revoke so that one more fits under `max`: the oldest first.
fn over_the_cap(
    txn: &WriteTransaction,
    families: &Table<'_>,
    user: UserId,
    now: UnixTime,
    max: usize,
) -> Result<Vec<FamilyId>, StoreError> {
    let mut live = Vec::new();
    for id in families_of(txn, user)? {
        if let Some(rec) = read_family(families, id)? {
            if now.secs() < rec.ended_at() {
                live.push((rec.created_at, id));
            }
        }
    }
    Ok(past_the_cap(live, max))
}

/// Of a user's `live` sessions (when each began, and its id), those to revoke so that one
/// more fits under `max`: the oldest first.
pub(super) fn past_the_cap(mut live: Vec<(i64, FamilyId)>, max: usize) -> Vec<FamilyId> {
    let excess = (live.len() + 1).saturating_sub(max.max(1));
    // Family ids are UUID v7: within one second they sort in the order sessions began.
    live.sort_unstable();
    live.into_iter().take(excess).map(|(_, id)| id).collect()
}

/// Marks a family revoked inside `families`: the user whose session it was, or `None` if it was
/// missing or already revoked.
pub(super) fn revoke_in(
    families: &mut Table<'_>,
    family: FamilyId,
    now: UnixTime,
) -> Result<Option<UserId>, StoreError> {
    let Some(mut rec) = read_family(families, family)? else {
        return Ok(None);
    };
    if rec.revoked_at.is_some() {
        return Ok(None);
    }
    rec.revoked_at = Some(now.secs());
    write_family(families, family, &rec)?;
    Ok(Some(UserId(rec.user)))
}

/// Writes one family row.
fn write_family(
    families: &mut Table<'_>,
    family: FamilyId,
    rec: &FamilyRecord,
) -> Result<(), StoreError> {
    families.insert(family.key(), family_row::encode(rec)?.as_slice())?;
    Ok(())
}

/// Reads one family row.
pub(super) fn read_family(
    families: &impl ReadableTable<Bytes, Bytes>,
    family: FamilyId,
) -> Result<Option<FamilyRecord>, StoreError> {
    let row = families.get(family.key())?;
    row.map(|bytes| family_row::decode(bytes.value()))
        .transpose()
}

/// Compares two hashes without an early exit, so timing does not reveal the matching prefix.
pub(super) fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}
