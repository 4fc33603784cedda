//! The second factor: TOTP enrolments and the challenges between a password step and its code.
//!
//! Codes are checked by the auth layer, which holds the secret in hand; what it hands down is
//! the factor to spend ([`SecondFactor`]). Spending is a compare-and-swap decided here, in the
//! transaction that relies on it: a time step is accepted only if it is later than the last one
//! stored (so a replayed code fails even across a restart), and a recovery code only if its
//! hash is still stored (then it is removed).

use redb::{ReadableTable, WriteTransaction};

use super::records::{decode, encode, ChallengeRecord, RowKey, TotpRecord};
use super::sessions::{hashes_equal, open_checked_in, revoke_all_in};
use super::tables::{Bytes, Table, MFA_CHALLENGES, TOTP, USERS};
use super::users::read_user;
use super::{StoreError, Written};
use crate::model::{
    FamilyId, MfaChallenge, MfaCompletion, NewSession, Origin, SecondFactor, SessionPolicy, Totp,
    TotpUpdate, User, UserId, PENDING_TOTP_SECS,
};
use crate::time::UnixTime;

/// Reads one enrolment.
pub(super) fn read_totp(
    table: &impl ReadableTable<Bytes, Bytes>,
    user: UserId,
) -> Result<Option<Totp>, StoreError> {
    let row = table.get(user.key())?;
    row.map(|bytes| decode::<TotpRecord>("totp", bytes.value()).map(TotpRecord::into_totp))
        .transpose()
}

fn write_totp(table: &mut Table<'_>, user: UserId, totp: &Totp) -> Result<(), StoreError> {
    table.insert(user.key(), encode(&TotpRecord::from_totp(totp)).as_slice())?;
    Ok(())
}

/// Whether `user` has TOTP on: then no session opens without a second factor.
pub(super) fn is_on_in(txn: &WriteTransaction, user: UserId) -> Result<bool, StoreError> {
    Ok(read_totp(&txn.open_table(TOTP)?, user)?.is_some_and(|t| t.is_on()))
}

/// Whether `user` exists and is enabled.
fn is_enabled_in(txn: &WriteTransaction, user: UserId) -> Result<bool, StoreError> {
    Ok(read_user(&txn.open_table(USERS)?, user)?.is_some_and(|u| !u.disabled))
}

/// Stores a pending enrolment for an enabled user, begun in `session`, replacing an earlier
/// pending one.
pub(super) fn begin_in(
    txn: &WriteTransaction,
    user: UserId,
    secret: [u8; 20],
    session: FamilyId,
    now: UnixTime,
) -> Result<Written<TotpUpdate>, StoreError> {
    if !is_enabled_in(txn, user)? {
        return Ok(Written::nothing(TotpUpdate::NoSuchUser));
    }
    let mut table = txn.open_table(TOTP)?;
    match begun(read_totp(&table, user)?.as_ref(), secret, session, now) {
        Ok(pending) => {
            write_totp(&mut table, user, &pending)?;
            Ok(Written::commit(TotpUpdate::Done))
        }
        Err(refused) => Ok(Written::nothing(refused)),
    }
}

/// The pending enrolment of `secret` begun in `session` at `now` that replaces `stored`, or
/// `AlreadyOn` if `stored` is on. Decides [`begin_in`] for every backend.
pub(super) fn begun(
    stored: Option<&Totp>,
    secret: [u8; 20],
    session: FamilyId,
    now: UnixTime,
) -> Result<Totp, TotpUpdate> {
    if stored.is_some_and(Totp::is_on) {
        return Err(TotpUpdate::AlreadyOn);
    }
    Ok(Totp {
        secret,
        created_at: now,
        began_in: Some(session),
        confirmed_at: None,
        last_step: None,
        recovery_salt: [0; 16],
        recovery: Vec::new(),
    })
}

/// Turns on the pending enrolment whose secret is `secret`, with `step` (the confirming code's)
/// as the last accepted step and `recovery` (hashes under `salt`) as the recovery codes.
pub(super) fn confirm_in(
    txn: &WriteTransaction,
    user: UserId,
    secret: &[u8; 20],
    step: u64,
    salt: [u8; 16],
    recovery: Vec<[u8; 32]>,
    now: UnixTime,
) -> Result<Written<TotpUpdate>, StoreError> {
    if !is_enabled_in(txn, user)? {
        return Ok(Written::nothing(TotpUpdate::NoSuchUser));
    }
    let mut table = txn.open_table(TOTP)?;
    match confirmed(read_totp(&table, user)?, secret, step, salt, recovery, now) {
        Ok(totp) => {
            write_totp(&mut table, user, &totp)?;
            Ok(Written::commit(TotpUpdate::Done))
        }
        Err(refused) => Ok(Written::nothing(refused)),
    }
}

/// `stored` turned on by a code of `step` checked against `secret`, or why not: `NotEnrolled`
/// (nothing pending, or another secret), `AlreadyOn`, or `Spent`. Decides [`confirm_in`] for
/// every backend.
pub(super) fn confirmed(
    stored: Option<Totp>,
    secret: &[u8; 20],
    step: u64,
    salt: [u8; 16],
    recovery: Vec<[u8; 32]>,
    now: UnixTime,
) -> Result<Totp, TotpUpdate> {
    let Some(mut totp) = stored else {
        return Err(TotpUpdate::NotEnrolled);
    };
    if totp.is_on() {
        return Err(TotpUpdate::AlreadyOn);
    }
    if totp.secret != *secret {
        // Enrolment began again after the code was checked.
        return Err(TotpUpdate::NotEnrolled);
    }
    if totp.last_step.is_some_and(|last| step <= last) {
        return Err(TotpUpdate::Spent);
    }
    totp.confirmed_at = Some(now);
    totp.began_in = None;
    totp.last_step = Some(step);
    totp.recovery_salt = salt;
    totp.recovery = recovery;
    Ok(totp)
}

/// Turns TOTP off for `user`, spending `factor`; its recovery codes go with it.
pub(super) fn disable_in(
    txn: &WriteTransaction,
    user: UserId,
    factor: SecondFactor,
) -> Result<Written<TotpUpdate>, StoreError> {
    let mut table = txn.open_table(TOTP)?;
    if let Err(refused) = disabling(read_totp(&table, user)?, factor) {
        return Ok(Written::nothing(refused));
    }
    table.remove(user.key())?;
    Ok(Written::commit(TotpUpdate::Done))
}

/// Whether `stored` may be turned off by spending `factor`: `NotEnrolled` unless it is on,
/// `Spent` if the factor was. Decides [`disable_in`] for every backend.
pub(super) fn disabling(stored: Option<Totp>, factor: SecondFactor) -> Result<(), TotpUpdate> {
    let Some(mut totp) = stored.filter(Totp::is_on) else {
        return Err(TotpUpdate::NotEnrolled);
    };
    if !spend(&mut totp, factor) {
        return Err(TotpUpdate::Spent);
    }
    Ok(())
}

/// The operator's reset: deletes any enrolment of `user` and ends all its sessions (token
/// version bumped); `false` if there is no such user.
pub(super) fn reset_in(
    txn: &WriteTransaction,
    user: UserId,
    now: UnixTime,
) -> Result<Written<bool>, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let Some(mut row) = read_user(&users, user)? else {
        return Ok(Written::nothing(false));
    };
    txn.open_table(TOTP)?.remove(user.key())?;
    let changes = revoke_all_in(txn, &mut users, &mut row, now)?;
    Ok(Written::commit_with(true, changes))
}

/// Stores a challenge under the hash of its token.
pub(super) fn open_challenge_in(
    txn: &WriteTransaction,
    hash: &[u8; 32],
    challenge: &MfaChallenge,
) -> Result<Written<()>, StoreError> {
    let record = encode(&ChallengeRecord::from_challenge(challenge));
    if txn
        .open_table(MFA_CHALLENGES)?
        .insert(hash.as_slice(), record.as_slice())?
        .is_some()
    {
        return Err(StoreError::FamilyExists); // the same token twice: the RNG failed
    }
    Ok(Written::commit(()))
}

/// Reads one challenge, live or not.
pub(super) fn read_challenge(
    table: &impl ReadableTable<Bytes, Bytes>,
    hash: &[u8; 32],
) -> Result<Option<MfaChallenge>, StoreError> {
    let row = table.get(hash.as_slice())?;
    row.map(|bytes| {
        decode::<ChallengeRecord>("mfa_challenges", bytes.value())
            .map(ChallengeRecord::into_challenge)
    })
    .transpose()
}

/// Counts a wrong code against the challenge; at `max_failures` the challenge is deleted.
/// Answers whether it is still live.
pub(super) fn fail_challenge_in(
    txn: &WriteTransaction,
    hash: &[u8; 32],
    max_failures: u32,
    now: UnixTime,
) -> Result<Written<bool>, StoreError> {
    let mut table = txn.open_table(MFA_CHALLENGES)?;
    let Some(mut challenge) = read_challenge(&table, hash)? else {
        return Ok(Written::nothing(false));
    };
    if !count_failure(&mut challenge, max_failures, now) {
        table.remove(hash.as_slice())?;
        return Ok(Written::commit(false));
    }
    table.insert(
        hash.as_slice(),
        encode(&ChallengeRecord::from_challenge(&challenge)).as_slice(),
    )?;
    Ok(Written::commit(true))
}

/// Counts one wrong code against `challenge`; whether it is still live (not at
/// `max_failures`, not expired at `now`): if not, it is to be deleted. Decides
/// [`fail_challenge_in`] for every backend.
pub(super) fn count_failure(
    challenge: &mut MfaChallenge,
    max_failures: u32,
    now: UnixTime,
) -> bool {
    challenge.failures = challenge.failures.saturating_add(1);
    challenge.failures < max_failures && is_live(challenge, now)
}

/// Whether `challenge` still accepts a code at `now`.
pub(super) fn is_live(challenge: &MfaChallenge, now: UnixTime) -> bool {
    now < challenge.expires_at
}

/// What completing a live challenge decides, given its user and enrolment as stored now.
#[allow(clippy::large_enum_variant)] // one per sign-in, taken apart at once
pub(super) enum Completing {
    /// The user changed since the password step, or has TOTP off: delete the challenge.
    Stale,
    /// The factor was spent already: write nothing.
    Spent,
    /// Delete the challenge, store `totp` (the factor spent), and open the session.
    Open {
        /// The user, as read in the transaction.
        user: User,
        /// The enrolment with the factor spent.
        totp: Totp,
        /// Recovery codes left, when a recovery code was used.
        recovery_left: Option<usize>,
    },
}

/// Decides [`complete_in`] for every backend, from `challenge` (live), its user and that
/// user's enrolment as the transaction read them.
pub(super) fn completing(
    challenge: &MfaChallenge,
    user: Option<User>,
    totp: Option<Totp>,
    factor: SecondFactor,
) -> Completing {
    let user = user.filter(|u| {
        !u.disabled
            && u.token_version == challenge.token_version
            && u.password_hash == challenge.password_hash
    });
    let (Some(user), Some(mut totp)) = (user, totp.filter(Totp::is_on)) else {
        return Completing::Stale;
    };
    if !spend(&mut totp, factor) {
        return Completing::Spent;
    }
    let recovery_left = matches!(factor, SecondFactor::Recovery(_)).then_some(totp.recovery.len());
    Completing::Open {
        user,
        totp,
        recovery_left,
    }
}

/// Spends the challenge and `factor` and opens the session, in one transaction; see
/// [`Storage::complete_challenge`](crate::auth::storage::Storage::complete_challenge).
#[allow(clippy::too_many_arguments)] // the port's arguments, plus the transaction
pub(super) fn complete_in(
    txn: &WriteTransaction,
    hash: &[u8; 32],
    factor: SecondFactor,
    family: FamilyId,
    first_hash: &[u8; 32],
    origin: Origin,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<Written<MfaCompletion>, StoreError> {
    let mut challenges = txn.open_table(MFA_CHALLENGES)?;
    let Some(challenge) = read_challenge(&challenges, hash)? else {
        return Ok(Written::nothing(MfaCompletion::UnknownChallenge));
    };
    if !is_live(&challenge, now) {
        return Ok(Written::nothing(MfaCompletion::UnknownChallenge));
    }
    let user = read_user(&txn.open_table(USERS)?, challenge.user)?;
    let mut table = txn.open_table(TOTP)?;
    let totp = read_totp(&table, challenge.user)?;
    let (user, totp, recovery_left) = match completing(&challenge, user, totp, factor) {
        Completing::Stale => {
            challenges.remove(hash.as_slice())?;
            return Ok(Written::commit(MfaCompletion::Stale));
        }
        Completing::Spent => return Ok(Written::nothing(MfaCompletion::Spent)),
        Completing::Open {
            user,
            totp,
            recovery_left,
        } => (user, totp, recovery_left),
    };
    challenges.remove(hash.as_slice())?;
    write_totp(&mut table, user.id, &totp)?;
    drop((challenges, table));
    let session = NewSession {
        kind: challenge.kind,
        mfa: true,
        origin,
    };
    let changes = open_checked_in(txn, family, user.id, first_hash, &session, now, policy)?;
    Ok(Written::commit_with(
        MfaCompletion::Opened {
            user,
            recovery_left,
        },
        changes,
    ))
}

/// Spends `factor` from `totp` in memory: a step later than the last accepted one becomes the
/// last; a stored recovery hash is removed. `false` if the factor was already spent.
fn spend(totp: &mut Totp, factor: SecondFactor) -> bool {
    match factor {
        SecondFactor::Step(step) => {
            if totp.last_step.is_some_and(|last| step <= last) {
                return false;
            }
            totp.last_step = Some(step);
            true
        }
        SecondFactor::Recovery(presented) => {
            let Some(at) = totp
                .recovery
                .iter()
                .position(|stored| hashes_equal(stored, &presented))
            else {
                return false;
            };
            totp.recovery.swap_remove(at);
            true
        }
    }
}

/// Deletes challenges that expired at or before `now`, and pending enrolments older than
/// [`PENDING_TOTP_SECS`]; answers how many.
pub(super) fn sweep_challenges_in(
    txn: &WriteTransaction,
    now: UnixTime,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(MFA_CHALLENGES)?;
    let mut gone = Vec::new();
    for row in table.iter()? {
        let (hash, bytes) = row?;
        let rec: ChallengeRecord = decode("mfa_challenges", bytes.value())?;
        if rec.expires_at <= now.secs() {
            gone.push(hash.value().to_vec());
        }
    }
    for hash in &gone {
        table.remove(hash.as_slice())?;
    }
    let mut enrolments = txn.open_table(TOTP)?;
    let mut stale = Vec::new();
    for row in enrolments.iter()? {
        let (user, bytes) = row?;
        let rec: TotpRecord = decode("totp", bytes.value())?;
        let ends = rec.created_at.saturating_add(PENDING_TOTP_SECS);
        if rec.confirmed_at.is_none() && ends <= now.secs() {
            stale.push(user.value().to_vec());
        }
    }
    for user in &stale {
        enrolments.remove(user.as_slice())?;
    }
    Ok((gone.len() + stale.len()) as u64)
}
