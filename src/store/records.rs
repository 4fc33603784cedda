//! Row encodings: `serde_json` for every record value, hex for byte strings. A row that fails to
//! decode is a `StoreError::Corrupt`, never a panic.

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

/// The part of a family row that says whether the view holds it: its user, whether it was
/// revoked, and whether it is a browser session (whose whole row is then read); see
/// [`family_view`].
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub(super) struct FamilyViewRecord {
    pub(super) user: Uuid,
    pub(super) revoked_at: Option<i64>,
    #[serde(default)]
    pub(super) browser: Option<BrowserRecord>,
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

/// The view's part of a user row, as [`decode`] would read it into a [`UserViewRecord`] (the
/// same rows accepted, the same values), but most rows without serde: opening reads every
/// user row, and the generic decoder was a fifth of that.
pub(super) fn user_view(bytes: &[u8]) -> Result<UserViewRecord<'_>, StoreError> {
    match scan::user(bytes) {
        Some(rec) => Ok(rec),
        // A row the scan does not read (an escape, a bad or odd row): serde's answer.
        None => decode("users", bytes),
    }
}

/// The view's part of a family row, as [`decode`] would read it into a [`FamilyViewRecord`]
/// (the same rows accepted, the same values), but an API session's row without serde.
pub(super) fn family_view(bytes: &[u8]) -> Result<FamilyViewRecord, StoreError> {
    match scan::family(bytes) {
        Some(rec) => Ok(rec),
        // A browser session, an escape, a bad or odd row: serde's answer.
        None => decode("families", bytes),
    }
}

/// A scan of a JSON row for the view's few fields, the rest checked and skipped. It reads the
/// common row (no escape in a field it keeps, no browser object) and gives up (`None`) on
/// anything else, valid or not, leaving it to serde: whatever it returns is what serde would
/// have returned, and a row it rejects is still rejected, with serde's words. For that it
/// accepts only what serde accepts: one object with each kept field once, the skipped values
/// valid JSON (strings as serde skips them: escapes checked, control characters refused, UTF-8
/// not checked), integers without fraction or exponent, nothing after the object.
mod scan {
    use std::borrow::Cow;

    use uuid::Uuid;

    use super::{FamilyViewRecord, UserViewRecord};

    /// `serde_json` refuses values nested deeper than 128; the scan gives up well before.
    const MAX_DEPTH: u32 = 64;

    /// A user row, read as `UserViewRecord`.
    pub(super) fn user(bytes: &[u8]) -> Option<UserViewRecord<'_>> {
        let mut email = None;
        let mut roles = None;
        let mut disabled = None;
        let mut token_version = None;
        let mut scan = Scan { bytes, at: 0 };
        scan.object(|scan, key| match key {
            b"email" => once(&mut email, scan.text()?),
            b"roles" => once(&mut roles, scan.texts()?),
            b"disabled" => once(&mut disabled, scan.boolean()?),
            b"token_version" => once(&mut token_version, scan.unsigned()?),
            _ => scan.skip(0),
        })?;
        Some(UserViewRecord {
            email: Cow::Borrowed(email?),
            roles: roles?,
            disabled: disabled?,
            token_version: token_version?,
        })
    }

    /// A family row without a browser object (an API session), read as `FamilyViewRecord`.
    pub(super) fn family(bytes: &[u8]) -> Option<FamilyViewRecord> {
        let mut user = None;
        let mut revoked_at = None;
        let mut browser = None;
        let mut scan = Scan { bytes, at: 0 };
        scan.object(|scan, key| match key {
            b"user" => once(&mut user, Uuid::try_parse_ascii(scan.plain()?).ok()?),
            b"revoked_at" => once(&mut revoked_at, scan.nullable_signed()?),
            // Only `null` here: a browser session's row is serde's to read, object and all.
            b"browser" => once(&mut browser, scan.null()?),
            _ => scan.skip(0),
        })?;
        Some(FamilyViewRecord {
            user: user?,
            revoked_at: revoked_at.flatten(),
            browser: None,
        })
    }

    /// Sets a field seen for the first time; `None` for a second time (serde refuses it).
    fn once<T>(field: &mut Option<T>, value: T) -> Option<()> {
        if field.is_some() {
            return None;
        }
        *field = Some(value);
        Some(())
    }

    /// Where the scan is in a row.
    struct Scan<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Scan<'a> {
        /// The next byte after any whitespace, not consumed.
        fn peek(&mut self) -> Option<u8> {
            while let Some(&b) = self.bytes.get(self.at) {
                if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    return Some(b);
                }
                self.at += 1;
            }
            None
        }

        /// The next byte after any whitespace, consumed.
        fn next(&mut self) -> Option<u8> {
            let b = self.peek()?;
            self.at += 1;
            Some(b)
        }

        fn expect(&mut self, want: u8) -> Option<()> {
            (self.next()? == want).then_some(())
        }

        /// A whole row: one object, `field` called on each key with the scan at its value
        /// (which it consumes), and nothing but whitespace after it.
        fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
            self.expect(b'{')?;
            if self.peek()? == b'}' {
                self.at += 1;
            } else {
                loop {
                    let key = self.plain()?;
                    // serde reads a key as UTF-8; the scan leaves any other to it.
                    if !key.is_ascii() {
                        return None;
                    }
                    self.expect(b':')?;
                    field(self, key)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => break,
                        _ => return None,
                    }
                }
            }
            (self.peek().is_none()).then_some(())
        }

        /// A string without escapes, its bytes borrowed (not checked for UTF-8).
        fn plain(&mut self) -> Option<&'a [u8]> {
            self.expect(b'"')?;
            let rest = self.bytes.get(self.at..)?;
            let len = memchr::memchr2(b'"', b'\\', rest)?;
            let text = rest.get(..len)?;
            if rest.get(len) != Some(&b'"') || text.iter().any(|&b| b < 0x20) {
                return None;
            }
            self.at += len + 1;
            Some(text)
        }

        /// A string without escapes, as text.
        fn text(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.plain()?).ok()
        }

        /// An array of strings without escapes.
        fn texts(&mut self) -> Option<Vec<String>> {
            self.expect(b'[')?;
            let mut list = Vec::new();
            if self.peek()? == b']' {
                self.at += 1;
                return Some(list);
            }
            loop {
                list.push(self.text()?.to_owned());
                match self.next()? {
                    b',' => {}
                    b']' => return Some(list),
                    _ => return None,
                }
            }
        }

        fn boolean(&mut self) -> Option<bool> {
            match self.peek()? {
                b't' => self.word(b"true").map(|()| true),
                b'f' => self.word(b"false").map(|()| false),
                _ => None,
            }
        }

        /// `null`.
        fn null(&mut self) -> Option<()> {
            self.word(b"null")
        }

        fn word(&mut self, word: &[u8]) -> Option<()> {
            self.peek()?;
            let end = self.at.checked_add(word.len())?;
            (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
        }

        /// An integer of digits only, no sign, fraction or exponent, that fits a `u64`.
        fn unsigned(&mut self) -> Option<u64> {
            self.peek()?;
            let digits = self.digits()?;
            let mut value: u64 = 0;
            for &d in digits {
                value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            }
            Some(value)
        }

        /// `null` (`Some(None)`) or an integer that fits an `i64`, no fraction or exponent (and
        /// not `-0`).
        #[allow(clippy::option_option)] // the scan's `None` (not read here) around JSON's `null`
        fn nullable_signed(&mut self) -> Option<Option<i64>> {
            if self.peek()? == b'n' {
                return self.null().map(|()| None);
            }
            let negative = self.bytes.get(self.at) == Some(&b'-');
            if negative {
                self.at += 1;
            }
            let mut value: i64 = 0;
            for &d in self.digits()? {
                let d = i64::from(d - b'0');
                value = value.checked_mul(10)?;
                value = if negative {
                    value.checked_sub(d)?
                } else {
                    value.checked_add(d)?
                };
            }
            // serde_json reads `-0` as a float, which is no `i64`.
            (!negative || value != 0).then_some(Some(value))
        }

        /// The digits of an integer as JSON writes it (`0` alone or no leading zero), with
        /// no fraction or exponent after them.
        fn digits(&mut self) -> Option<&'a [u8]> {
            let rest = self.bytes.get(self.at..)?;
            let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let digits = rest.get(..len)?;
            let leading_zero = len > 1 && digits.first() == Some(&b'0');
            if len == 0 || leading_zero || matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            self.at += len;
            Some(digits)
        }

        /// Any JSON value, checked as serde checks what it ignores.
        fn skip(&mut self, depth: u32) -> Option<()> {
            if depth > MAX_DEPTH {
                return None;
            }
            match self.peek()? {
                b'"' => self.skip_string(),
                b'{' => {
                    self.at += 1;
                    if self.peek()? == b'}' {
                        self.at += 1;
                        return Some(());
                    }
                    loop {
                        self.skip_string()?;
                        self.expect(b':')?;
                        self.skip(depth + 1)?;
                        match self.next()? {
                            b',' => {}
                            b'}' => return Some(()),
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.at += 1;
                    if self.peek()? == b']' {
                        self.at += 1;
                        return Some(());
                    }
                    loop {
                        self.skip(depth + 1)?;
                        match self.next()? {
                            b',' => {}
                            b']' => return Some(()),
                            _ => return None,
                        }
                    }
                }
                b't' => self.word(b"true"),
                b'f' => self.word(b"false"),
                b'n' => self.word(b"null"),
                _ => self.skip_number(),
            }
        }

        /// A string, escapes and all: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` or `\u`
        /// and four hex digits, and no control character.
        fn skip_string(&mut self) -> Option<()> {
            self.expect(b'"')?;
            loop {
                let rest = self.bytes.get(self.at..)?;
                let len = memchr::memchr2(b'"', b'\\', rest)?;
                if rest.get(..len)?.iter().any(|&b| b < 0x20) {
                    return None;
                }
                self.at += len + 1;
                if rest.get(len) == Some(&b'"') {
                    return Some(());
                }
                match *self.bytes.get(self.at)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                    b'u' => {
                        let end = self.at.checked_add(5)?;
                        let hex = self.bytes.get(self.at + 1..end)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at = end;
                    }
                    _ => return None,
                }
            }
        }

        /// A number: `-`, then `0` or digits without a leading zero, then perhaps a fraction
        /// and an exponent.
        fn skip_number(&mut self) -> Option<()> {
            if self.bytes.get(self.at) == Some(&b'-') {
                self.at += 1;
            }
            let whole = self.run_of_digits();
            if whole == 0 || (whole > 1 && self.bytes.get(self.at - whole) == Some(&b'0')) {
                return None;
            }
            if self.bytes.get(self.at) == Some(&b'.') {
                self.at += 1;
                if self.run_of_digits() == 0 {
                    return None;
                }
            }
            if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                if self.run_of_digits() == 0 {
                    return None;
                }
            }
            Some(())
        }

        /// Consumes digits; how many.
        fn run_of_digits(&mut self) -> usize {
            let rest = self.bytes.get(self.at..).unwrap_or_default();
            let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            self.at += len;
            len
        }
    }
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

    fn user_rows() -> Vec<Vec<u8>> {
        let rec = UserRecord {
            email: "ann@example.com".to_owned(),
            password_hash: "$pbkdf2-sha256$i=600000,l=32$c2FsdA$aGFzaA".to_owned(),
            roles: vec!["admin".to_owned(), "ops".to_owned()],
            created_at: 1_700_000_000,
            disabled: true,
            token_version: u64::MAX,
        };
        let mut rows = vec![encode(&rec)];
        let plain = UserRecord {
            roles: Vec::new(),
            disabled: false,
            token_version: 0,
            ..rec
        };
        rows.push(encode(&plain));
        for text in [
            // Reordered, spaced, with fields this build does not know, nested values skipped.
            " {\"token_version\" : 7 ,\"roles\":[ \"a\" , \"b\" ],\"x\":{\"y\":[1,-2.5e+3,true,null,{}]},\"disabled\":false,\"email\":\"b@c\"}\n",
            // Escapes, which only serde reads.
            r#"{"email":"a\"b@c","roles":["\u00e9"],"disabled":false,"token_version":1}"#,
            r#"{"em\u0061il":"a@b","roles":[],"disabled":false,"token_version":1}"#,
            // A skipped string's escapes are checked, not read.
            r#"{"email":"a@b","password_hash":"\\\"\/\b\f\n\r\t\u12aF","roles":[],"disabled":false,"token_version":1}"#,
            "{\"email\":\"\u{e9}@b\",\"roles\":[],\"disabled\":false,\"token_version\":1,\"n\":-0}",
        ] {
            rows.push(text.as_bytes().to_vec());
        }
        rows
    }

    fn family_rows() -> Vec<Vec<u8>> {
        let mut rec = api_family("curl/8".to_owned());
        let mut rows = vec![encode(&rec)];
        rec.revoked_at = Some(-9_223_372_036_854_775_808);
        rec.previous = None;
        rows.push(encode(&rec));
        rec.revoked_at = Some(1_700_000_000);
        rec.kind = SessionKind::Browser;
        rec.mfa = true;
        rec.browser = Some(BrowserRecord {
            idle_secs: 60,
            last_used_at: 3,
        });
        rows.push(encode(&rec));
        let user = rec.user;
        for text in [
            format!(r#"{{"user":"{user}","browser":null,"revoked_at":null}}"#),
            format!(r#"{{"user":"{}","revoked_at":5}}"#, user.simple()),
            format!(r#"{{"revoked_at":-0,"user":"{}"}}"#, user.urn()),
        ] {
            rows.push(text.into_bytes());
        }
        rows
    }

    /// The user rows the scan reads itself, not through serde.
    #[test]
    fn the_scan_reads_what_the_server_writes() {
        let users = user_rows();
        for row in &users[..3] {
            assert!(
                scan::user(row).is_some(),
                "{}",
                String::from_utf8_lossy(row)
            );
        }
        for row in &family_rows()[..2] {
            assert!(
                scan::family(row).is_some(),
                "{}",
                String::from_utf8_lossy(row)
            );
        }
        // A browser session's row is left to serde.
        assert!(scan::family(&family_rows()[2]).is_none());
        let read = user_view(&users[0]).unwrap();
        assert_eq!(read.email, "ann@example.com");
        assert!(matches!(read.email, Cow::Borrowed(_)));
        assert_eq!((read.roles.len(), read.disabled), (2, true));
        assert_eq!(read.token_version, u64::MAX);
    }

    /// Every row, valid or not, reads as serde reads it into the same struct: the same value,
    /// or an error where serde errs (a `Corrupt` one, never a panic). Tried on sample rows, on
    /// every prefix of them, and on every one-byte change of them to a byte JSON gives meaning.
    #[test]
    fn view_rows_read_as_serde_reads_them() {
        fn variants(row: &[u8]) -> Vec<Vec<u8>> {
            let mut out = vec![row.to_vec()];
            out.extend((0..row.len()).map(|n| row[..n].to_vec()));
            for at in 0..row.len() {
                for b in b" \"\\:,{}[]-+.0159eEtfnulx\x00\x1f\x80\xff" {
                    let mut changed = row.to_vec();
                    changed[at] = *b;
                    out.push(changed);
                }
                let mut cut = row.to_vec();
                cut.remove(at);
                out.push(cut);
            }
            out
        }
        let (mut users, mut families) = (0, 0);
        for row in user_rows() {
            for bytes in variants(&row) {
                let serde: Result<UserViewRecord<'_>, _> = decode("users", &bytes);
                match (user_view(&bytes), serde) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want),
                    (Err(StoreError::Corrupt { table: "users", .. }), Err(_)) => users += 1,
                    (got, want) => panic!(
                        "{}: {got:?}, serde {want:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                }
            }
        }
        for row in family_rows() {
            for bytes in variants(&row) {
                let serde: Result<FamilyViewRecord, _> = decode("families", &bytes);
                match (family_view(&bytes), serde) {
                    (Ok(got), Ok(want)) => assert_eq!(got, want),
                    (
                        Err(StoreError::Corrupt {
                            table: "families", ..
                        }),
                        Err(_),
                    ) => families += 1,
                    (got, want) => panic!(
                        "{}: {got:?}, serde {want:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                }
            }
        }
        // Most changed rows are bad ones.
        assert!(users > 10_000 && families > 10_000, "{users} {families}");
    }

    #[test]
    fn truncated_and_garbled_view_rows_are_corrupt() {
        let user = &user_rows()[0];
        let family = &family_rows()[0];
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
        let bad_browser = format!(r#"{{"user":"{}","browser":7}}"#, Uuid::nil());
        for bad in [
            &family[..family.len() - 1],
            &family[..10],
            no_user,
            bad_uuid,
            bad_browser.as_bytes(),
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
