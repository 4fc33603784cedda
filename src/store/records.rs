//! Row encodings: `serde_json` for every record value (but a redb family row, `family_row.rs`),
//! hex for byte strings. A row that fails to decode is a `StoreError::Corrupt`, never a panic.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::model::{
    FamilyId, MfaChallenge, Origin, SessionInfo, SessionKind, StoredKey, Totp, User, UserId,
};
use crate::time::UnixTime;

/// A user row; the id is the key.
#[derive(Serialize, Deserialize)]
pub(super) struct UserRecord {
    pub(super) email: String,
    pub(super) password_hash: String,
    pub(super) roles: Vec<String>,
    pub(super) created_at: i64,
    pub(super) disabled: bool,
    pub(super) token_version: u64,
}

impl UserRecord {
    pub(super) fn from_user(user: &User) -> Self {
        Self {
            email: user.email.clone(),
            password_hash: user.password_hash.clone(),
            roles: user.roles.clone(),
            created_at: user.created_at.secs(),
            disabled: user.disabled,
            token_version: user.token_version,
        }
    }

    pub(super) fn into_user(self, id: UserId) -> User {
        User {
            id,
            email: self.email,
            password_hash: self.password_hash,
            roles: self.roles,
            created_at: UnixTime(self.created_at),
            disabled: self.disabled,
            token_version: self.token_version,
        }
    }
}

/// The part of a user row the in-memory view holds, read at open without the rest (the
/// password hash is skipped, the email borrowed from the row); see [`user_view`].
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub(super) struct UserViewRecord<'a> {
    #[serde(borrow)]
    pub(super) email: Cow<'a, str>,
    pub(super) roles: Vec<String>,
    pub(super) disabled: bool,
    pub(super) token_version: u64,
}

/// The user of a JSON family row (schemas 1-8), which the migration to schema 7 indexes the
/// row by; see [`family_view`].
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub(super) struct FamilyViewRecord {
    pub(super) user: Uuid,
}

/// A refresh family row. Its size does not grow with rotations: only the current token and the
/// one it superseded are kept; older generations are recognized from the token's own
/// (MAC-protected) generation number.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(super) struct FamilyRecord {
    pub(super) user: Uuid,
    pub(super) created_at: i64,
    /// `created_at + session_max`: no token of the family is accepted at or after it.
    pub(super) expires_at_max: i64,
    pub(super) current: Current,
    pub(super) previous: Option<Previous>,
    pub(super) revoked_at: Option<i64>,
    /// What the session is; absent for an API session (all of schema 1 and 2), so rows stay
    /// small.
    #[serde(default, skip_serializing_if = "is_api")]
    pub(super) kind: SessionKind,
    /// Whether the sign-in passed a second factor; absent when it did not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) mfa: bool,
    /// A browser session's idle timeout, fixed when it began (the configured one may only
    /// shorten it later), and its last use as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) browser: Option<BrowserRecord>,
    /// The `User-Agent` at sign-in, at most `MAX_USER_AGENT_BYTES` (schema 5); set once, so
    /// the row keeps its size however often the session rotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<String>,
    /// The client address at sign-in (schema 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_ip: Option<std::net::IpAddr>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_api(kind: &SessionKind) -> bool {
    *kind == SessionKind::Api
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// What only a browser session has.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BrowserRecord {
    pub(super) idle_secs: i64,
    pub(super) last_used_at: i64,
}

impl FamilyRecord {
    /// When the session ends for good, however it is used from now on: revocation, the
    /// absolute maximum, the refresh token's sliding expiry, or a browser session's idle
    /// timeout. A browser session's last use on disk may lag the real one by up to a quarter
    /// of its idle window (see `touch`), so it is given that much more.
    pub(super) fn ended_at(&self) -> i64 {
        if let Some(revoked) = self.revoked_at {
            return revoked;
        }
        let sliding = match self.browser {
            Some(b) => b
                .last_used_at
                .saturating_add(b.idle_secs)
                .saturating_add(b.idle_secs / 4),
            None => self.current.expires_at,
        };
        sliding.min(self.expires_at_max)
    }

    /// The session as its owner's list shows it.
    pub(super) fn info(&self, id: FamilyId) -> SessionInfo {
        let (last_used, sliding) = match self.browser {
            Some(b) => (b.last_used_at, b.last_used_at.saturating_add(b.idle_secs)),
            // Every rotation writes `previous.rotated_at`: the last use of an API session.
            None => (
                self.previous
                    .as_ref()
                    .map_or(self.created_at, |p| p.rotated_at),
                self.current.expires_at,
            ),
        };
        SessionInfo {
            id,
            kind: self.kind,
            created_at: UnixTime(self.created_at),
            last_used_at: UnixTime(last_used),
            expires_at: UnixTime(sliding.min(self.expires_at_max)),
            origin: Origin {
                user_agent: self.user_agent.clone(),
                client_ip: self.client_ip,
            },
            mfa: self.mfa,
        }
    }
}

/// The family's one valid token.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(super) struct Current {
    pub(super) generation: u64,
    #[serde(with = "hex")]
    pub(super) hash: [u8; 32],
    /// Sliding: `min(rotated_at + refresh_ttl, expires_at_max)`.
    pub(super) expires_at: i64,
}

/// The token the current one superseded, kept for the retry grace.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(super) struct Previous {
    #[serde(with = "hex")]
    pub(super) hash: [u8; 32],
    pub(super) rotated_at: i64,
    /// The current token sealed under a key only the superseded token's holder can derive.
    #[serde(with = "hex")]
    pub(super) sealed: [u8; 32],
}

/// A TOTP enrolment row; the user id is the key.
#[derive(Serialize, Deserialize)]
pub(super) struct TotpRecord {
    #[serde(with = "hex")]
    pub(super) secret: [u8; 20],
    pub(super) created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) began_in: Option<Uuid>,
    pub(super) confirmed_at: Option<i64>,
    pub(super) last_step: Option<u64>,
    #[serde(with = "hex")]
    pub(super) recovery_salt: [u8; 16],
    #[serde(with = "hex_list")]
    pub(super) recovery: Vec<[u8; 32]>,
}

impl TotpRecord {
    pub(super) fn from_totp(totp: &Totp) -> Self {
        Self {
            secret: totp.secret,
            created_at: totp.created_at.secs(),
            began_in: totp.began_in.map(|f| f.0),
            confirmed_at: totp.confirmed_at.map(UnixTime::secs),
            last_step: totp.last_step,
            recovery_salt: totp.recovery_salt,
            recovery: totp.recovery.clone(),
        }
    }

    pub(super) fn into_totp(self) -> Totp {
        Totp {
            secret: self.secret,
            created_at: UnixTime(self.created_at),
            began_in: self.began_in.map(FamilyId),
            confirmed_at: self.confirmed_at.map(UnixTime),
            last_step: self.last_step,
            recovery_salt: self.recovery_salt,
            recovery: self.recovery,
        }
    }
}

/// A second-factor challenge row; the SHA-256 of its token is the key.
#[derive(Serialize, Deserialize)]
pub(super) struct ChallengeRecord {
    pub(super) user: Uuid,
    pub(super) token_version: u64,
    pub(super) password_hash: String,
    pub(super) kind: SessionKind,
    pub(super) expires_at: i64,
    pub(super) failures: u32,
}

impl ChallengeRecord {
    pub(super) fn from_challenge(challenge: &MfaChallenge) -> Self {
        Self {
            user: challenge.user.0,
            token_version: challenge.token_version,
            password_hash: challenge.password_hash.clone(),
            kind: challenge.kind,
            expires_at: challenge.expires_at.secs(),
            failures: challenge.failures,
        }
    }

    pub(super) fn into_challenge(self) -> MfaChallenge {
        MfaChallenge {
            user: UserId(self.user),
            token_version: self.token_version,
            password_hash: self.password_hash,
            kind: self.kind,
            expires_at: UnixTime(self.expires_at),
            failures: self.failures,
        }
    }
}

/// A signing key row; the insertion sequence is the key.
#[derive(Serialize, Deserialize)]
pub(super) struct KeyRecord {
    pub(super) kid: String,
    #[serde(with = "hex")]
    pub(super) secret: Vec<u8>,
    pub(super) created_at: i64,
    pub(super) retired_at: Option<i64>,
}

impl KeyRecord {
    pub(super) fn from_key(key: &StoredKey) -> Self {
        Self {
            kid: key.kid.clone(),
            secret: key.secret.clone(),
            created_at: key.created_at.secs(),
            retired_at: key.retired_at.map(UnixTime::secs),
        }
    }

    pub(super) fn into_key(self) -> StoredKey {
        StoredKey {
            kid: self.kid,
            secret: self.secret,
            created_at: UnixTime(self.created_at),
            retired_at: self.retired_at.map(UnixTime),
        }
    }
}

/// Encodes a record as JSON bytes.
pub(super) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record)
        .expect("records are plain structs with string keys, which always serialize")
}

/// Decodes a row of `table`, turning any failure into `StoreError::Corrupt`.
pub(super) fn decode<'de, T: Deserialize<'de>>(
    table: &'static str,
    bytes: &'de [u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

/// The key of a row named by an id: the UUID's 16 bytes, which sort as the ids do.
pub(super) trait RowKey {
    fn key(&self) -> &[u8];
}

macro_rules! row_key {
    ($($id:ty),*) => {$(
        impl RowKey for $id {
            fn key(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }
    )*};
}
row_key!(
    crate::model::UserId,
    FamilyId,
    crate::model::Jti,
    crate::model::AuditId
);

/// The key of a `families_by_user` row: the user's id, then the family's.
pub(super) fn user_family_key(user: UserId, family: FamilyId) -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(user.0.as_bytes());
    key[16..].copy_from_slice(family.0.as_bytes());
    key
}

/// The key of a `role_members` row: the role's name, then the user's id. Among the keys that
/// start with a role's name, that role's rows are the ones 16 bytes longer than it.
pub(super) fn role_member_key(role: &str, user: UserId) -> Vec<u8> {
    [role.as_bytes(), user.0.as_bytes()].concat()
}

/// The id that ends a composite key of `table` (the family of a `families_by_user` key, the
/// user of a `role_members` key).
pub(super) fn last_id(table: &'static str, key: &[u8]) -> Result<Uuid, StoreError> {
    let at = key
        .len()
        .checked_sub(16)
        .ok_or_else(|| StoreError::Corrupt {
            table,
            detail: format!("a key of {} bytes", key.len()),
        })?;
    id_from(table, &key[at..])
}

/// An id read back from a key or value of `table`.
pub(super) fn id_from(table: &'static str, bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("an id of {} bytes, not 16", bytes.len()),
    })
}

/// The 8 bytes of a big-endian number (a sequence, a time) read back from a key or value of
/// `table`; the caller says which type they are.
pub(super) fn be_bytes(table: &'static str, bytes: &[u8]) -> Result<[u8; 8], StoreError> {
    <[u8; 8]>::try_from(bytes).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("a number of {} bytes, not 8", bytes.len()),
    })
}

/// The view's part of a user row (the migration to schema 8 builds `view_users` from it).
pub(super) fn user_view(bytes: &[u8]) -> Result<UserViewRecord<'_>, StoreError> {
    decode("users", bytes)
}

/// The user of a JSON family row (the migration to schema 7 builds `families_by_user` from it).
pub(super) fn family_view(bytes: &[u8]) -> Result<FamilyViewRecord, StoreError> {
    decode("families", bytes)
}

/// Lowercase hex for byte strings, so a row stays compact and readable in a dump.
mod hex {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, B: AsRef<[u8]>>(
        bytes: &B,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        // By table rather than `write!("{b:02x}")`: every rotation writes three of these, and
        // the formatter was a tenth of the writer thread's time.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let text: String = bytes
            .as_ref()
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
            .map(char::from)
            .collect();
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D, B>(d: D) -> Result<B, D::Error>
    where
        D: Deserializer<'de>,
        B: TryFrom<Vec<u8>>,
    {
        let text = <&str>::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() % 2 != 0 {
            return Err(D::Error::custom("odd-length hex"));
        }
        let mut bytes = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            let hi = nibble(pair[0]).ok_or_else(|| D::Error::custom("bad hex digit"))?;
            let lo = nibble(pair[1]).ok_or_else(|| D::Error::custom("bad hex digit"))?;
            bytes.push(hi << 4 | lo);
        }
        let len = bytes.len();
        B::try_from(bytes).map_err(|_| D::Error::custom(format!("wrong byte length {len}")))
    }

    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
}

/// A list of 32-byte strings as a JSON array of hex strings.
mod hex_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct Item(#[serde(with = "super::hex")] [u8; 32]);

    pub(super) fn serialize<S: Serializer>(list: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|b| Item(*b)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Ok(Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|i| i.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live API session's record with a superseded token, signed in with `user_agent`.
    fn api_family(user_agent: String) -> FamilyRecord {
        FamilyRecord {
            user: Uuid::new_v4(),
            created_at: 1,
            expires_at_max: 2,
            current: Current {
                generation: 7,
                hash: [0xab; 32],
                expires_at: 2,
            },
            previous: Some(Previous {
                hash: [1; 32],
                rotated_at: 1,
                sealed: [2; 32],
            }),
            revoked_at: None,
            kind: SessionKind::Api,
            mfa: false,
            browser: None,
            user_agent: Some(user_agent),
            client_ip: Some("2001:db8::1".parse().unwrap()),
        }
    }

    #[test]
    fn family_round_trips_and_keeps_a_constant_size() {
        let rec = api_family("x".repeat(crate::model::MAX_USER_AGENT_BYTES));
        let bytes = encode(&rec);
        let back: FamilyRecord = decode("families", &bytes).unwrap();
        assert_eq!(back.current.hash, [0xab; 32]);
        assert_eq!(back.previous.unwrap().sealed, [2; 32]);
        assert!(bytes.len() < 720, "{}", bytes.len());
        assert_eq!(back.client_ip, rec.client_ip);
        // Hashes are stored as lowercase two-digit hex, as older files hold them.
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(&format!("\"{}\"", "ab".repeat(32))), "{text}");
        assert!(text.contains(&format!("\"{}\"", "02".repeat(32))), "{text}");
        let mut mixed = rec;
        mixed.current.hash[..4].copy_from_slice(&[0x0f, 0xa0, 0x00, 0xff]);
        let text = String::from_utf8(encode(&mixed)).unwrap();
        assert!(
            text.contains(&format!("\"0fa000ff{}\"", "ab".repeat(28))),
            "{text}"
        );
    }

    fn user_row() -> Vec<u8> {
        encode(&UserRecord {
            email: "ann@example.com".to_owned(),
            password_hash: "$pbkdf2-sha256$i=600000,l=32$c2FsdA$aGFzaA".to_owned(),
            roles: vec!["admin".to_owned(), "ops".to_owned()],
            created_at: 1_700_000_000,
            disabled: true,
            token_version: u64::MAX,
        })
    }

    #[test]
    fn the_views_part_of_a_row_reads_what_the_server_writes() {
        let row = user_row();
        let read = user_view(&row).unwrap();
        assert_eq!(read.email, "ann@example.com");
        assert!(matches!(read.email, Cow::Borrowed(_)));
        assert_eq!((read.roles.len(), read.disabled), (2, true));
        assert_eq!(read.token_version, u64::MAX);
        let rec = api_family("curl/8".to_owned());
        assert_eq!(family_view(&encode(&rec)).unwrap().user, rec.user);
    }

    #[test]
    fn truncated_and_garbled_view_rows_are_corrupt() {
        let user = &user_row();
        let family = &encode(&api_family("curl/8".to_owned()));
        for bad in [
            &user[..user.len() - 1],
            &user[..user.len() / 2],
            b"",
            b"{}",
            b"null",
            b"\xff\x00garbage",
        ] {
            assert!(matches!(
                user_view(bad),
                Err(StoreError::Corrupt { table: "users", .. })
            ));
        }
        let doubled =
            br#"{"email":"a@b","roles":[],"disabled":false,"token_version":1,"disabled":true}"#;
        let trailing = br#"{"email":"a@b","roles":[],"disabled":false,"token_version":1} x"#;
        let too_big =
            br#"{"email":"a@b","roles":[],"disabled":false,"token_version":18446744073709551616}"#;
        let float = br#"{"email":"a@b","roles":[],"disabled":false,"token_version":1.0}"#;
        let control = b"{\"email\":\"a\x01b\",\"roles\":[],\"disabled\":false,\"token_version\":1}";
        for bad in [&doubled[..], trailing, too_big, float, control] {
            assert!(user_view(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let no_user = br#"{"revoked_at":null}"#;
        let bad_uuid = br#"{"user":"not-a-uuid","revoked_at":null}"#;
        for bad in [
            &family[..family.len() - 1],
            &family[..10],
            no_user,
            bad_uuid,
        ] {
            assert!(matches!(
                family_view(bad),
                Err(StoreError::Corrupt {
                    table: "families",
                    ..
                })
            ));
        }
    }

    #[test]
    fn bad_rows_are_errors() {
        for bad in [
            &b"\xff\x00garbage"[..],
            b"{}",
            br#"{"kid":"k","secret":"zz","created_at":1}"#,
        ] {
            let got = decode::<KeyRecord>("signing_keys", bad);
            assert!(matches!(
                got,
                Err(StoreError::Corrupt {
                    table: "signing_keys",
                    ..
                })
            ));
        }
        let short = br#"{"generation":0,"hash":"abcd","expires_at":1}"#;
        assert!(decode::<Current>("families", short).is_err());
    }
}
