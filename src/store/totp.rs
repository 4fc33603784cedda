//! The second factor: TOTP enrolments and the challenges between a password step and its code.
//!
//! Codes are checked by the auth layer, which holds the secret in hand; what it hands down is
//! the factor to spend ([`SecondFactor`]). Spending is a compare-and-swap decided here, in the
//! transaction that relies on it: a time step is accepted only if it is later than the last one
//! stored (so a replayed code fails even across a restart), and a recovery code only if its
//! hash is still stored (then it is removed).

use redb::{ReadableTable, Table, WriteTransaction};

use super::records::{decode, encode, ChallengeRecord, TotpRecord};
use super::sessions::{hashes_equal, open_checked_in, revoke_all_in};
use super::tables::{MFA_CHALLENGES, TOTP, USERS};
use super::users::read_user;
use super::{StoreError, Written};
use crate::model::{
    FamilyId, MfaChallenge, MfaCompletion, NewSession, Origin, SecondFactor, SessionPolicy, Totp,
    TotpUpdate, UserId, PENDING_TOTP_SECS,
};
use crate::time::UnixTime;

type TotpTable<'t> = Table<'t, u128, &'static [u8]>;

/// Reads one enrolment.
pub(super) fn read_totp(
    table: &impl ReadableTable<u128, &'static [u8]>,
    user: UserId,
) -> Result<Option<Totp>, StoreError> {
    let row = table.get(user.0.as_u128())?;
    row.map(|bytes| decode::<TotpRecord>("totp", bytes.value()).map(TotpRecord::into_totp))
        .transpose()
}

fn write_totp(table: &mut TotpTable<'_>, user: UserId, totp: &Totp) -> Result<(), StoreError> {
    table.insert(
        user.0.as_u128(),
        encode(&TotpRecord::from_totp(totp)).as_slice(),
    )?;
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
    if read_totp(&table, user)?.is_some_and(|t| t.is_on()) {
        return Ok(Written::nothing(TotpUpdate::AlreadyOn));
    }
    let pending = Totp {
        secret,
        created_at: now,
        began_in: Some(session),
        confirmed_at: None,
        last_step: None,
        recovery_salt: [0; 16],
        recovery: Vec::new(),
    };
    write_totp(&mut table, user, &pending)?;
    Ok(Written::commit(TotpUpdate::Done))
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
    let Some(mut totp) = read_totp(&table, user)? else {
        return Ok(Written::nothing(TotpUpdate::NotEnrolled));
    };
    if totp.is_on() {
        return Ok(Written::nothing(TotpUpdate::AlreadyOn));
    }
    if totp.secret != *secret {
        // Enrolment began again after the code was checked.
        return Ok(Written::nothing(TotpUpdate::NotEnrolled));
    }
    if totp.last_step.is_some_and(|last| step <= last) {
        return Ok(Written::nothing(TotpUpdate::Spent));
    }
    totp.confirmed_at = Some(now);
    totp.began_in = None;
    totp.last_step = Some(step);
    totp.recovery_salt = salt;
    totp.recovery = recovery;
    write_totp(&mut table, user, &totp)?;
    Ok(Written::commit(TotpUpdate::Done))
}

/// Turns TOTP off for `user`, spending `factor`; its recovery codes go with it.
pub(super) fn disable_in(
    txn: &WriteTransaction,
    user: UserId,
    factor: SecondFactor,
) -> Result<Written<TotpUpdate>, StoreError> {
    let mut table = txn.open_table(TOTP)?;
    let Some(mut totp) = read_totp(&table, user)?.filter(Totp::is_on) else {
        return Ok(Written::nothing(TotpUpdate::NotEnrolled));
    };
    if !spend(&mut totp, factor) {
        return Ok(Written::nothing(TotpUpdate::Spent));
    }
    table.remove(user.0.as_u128())?;
    Ok(Written::commit(TotpUpdate::Done))
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
    txn.open_table(TOTP)?.remove(user.0.as_u128())?;
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
        .insert(hash, record.as_slice())?
        .is_some()
    {
        return Err(StoreError::FamilyExists); // the same token twice: the RNG failed
    }
    Ok(Written::commit(()))
}

/// Reads one challenge, live or not.
pub(super) fn read_challenge(
    table: &impl ReadableTable<&'static [u8; 32], &'static [u8]>,
    hash: &[u8; 32],
) -> Result<Option<MfaChallenge>, StoreError> {
    let row = table.get(hash)?;
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
    challenge.failures = challenge.failures.saturating_add(1);
    if challenge.failures >= max_failures || now >= challenge.expires_at {
        table.remove(hash)?;
        return Ok(Written::commit(false));
    }
    table.insert(
        hash,
        encode(&ChallengeRecord::from_challenge(&challenge)).as_slice(),
    )?;
    Ok(Written::commit(true))
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
    if now >= challenge.expires_at {
        return Ok(Written::nothing(MfaCompletion::UnknownChallenge));
    }
    let user = read_user(&txn.open_table(USERS)?, challenge.user)?.filter(|u| {
        !u.disabled
            && u.token_version == challenge.token_version
            && u.password_hash == challenge.password_hash
    });
    let mut table = txn.open_table(TOTP)?;
    let totp = read_totp(&table, challenge.user)?.filter(Totp::is_on);
    let (Some(user), Some(mut totp)) = (user, totp) else {
        challenges.remove(hash)?;
        return Ok(Written::commit(MfaCompletion::Stale));
    };
    if !spend(&mut totp, factor) {
        return Ok(Written::nothing(MfaCompletion::Spent));
    }
    challenges.remove(hash)?;
    write_totp(&mut table, user.id, &totp)?;
    drop((challenges, table));
    let session = NewSession {
        kind: challenge.kind,
        mfa: true,
        origin,
    };
    let changes = open_checked_in(txn, family, user.id, first_hash, &session, now, policy)?;
    let recovery_left = matches!(factor, SecondFactor::Recovery(_)).then_some(totp.recovery.len());
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
            gone.push(*hash.value());
        }
    }
    for hash in &gone {
        table.remove(hash)?;
    }
    let mut enrolments = txn.open_table(TOTP)?;
    let mut stale = Vec::new();
    for row in enrolments.iter()? {
        let (user, bytes) = row?;
        let rec: TotpRecord = decode("totp", bytes.value())?;
        let ends = rec.created_at.saturating_add(PENDING_TOTP_SECS);
        if rec.confirmed_at.is_none() && ends <= now.secs() {
            stale.push(user.value());
        }
    }
    for user in &stale {
        enrolments.remove(*user)?;
    }
    Ok((gone.len() + stale.len()) as u64)
}
