//! Why a presented token was refused. One variant per rule of API.md "Verification rejects".

use std::fmt;

/// The first rule a presented access or refresh token broke.
///
/// Variants are deliberately fine-grained: tests pin each rule to its own variant, and metrics
/// count rejections by [`TokenError::reason`]. None of them is shown to the client, which only
/// ever sees `invalid_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than `MAX_TOKEN_BYTES`; refused before any decoding.
    TooLong,
    /// Not exactly three `.`-separated segments (RFC 7515 §7.1).
    Segments,
    /// A segment is not canonical unpadded base64url (RFC 7515 §2): padding, `+`, `/`,
    /// whitespace or non-zero trailing bits.
    Base64,
    /// The header or payload is not a JSON object (or not valid JSON / UTF-8 at all).
    NotJsonObject,
    /// The header or payload names a member twice (RFC 7515 §4, RFC 7519 §4).
    DuplicateMember,
    /// `alg` is missing or anything but exactly `"HS256"`.
    AlgNotHs256,
    /// `typ` is missing or anything but exactly `"at+jwt"` (RFC 9068 §2.1).
    WrongTyp,
    /// `kid` is missing, not a string, or names no key of the keyring.
    UnknownKid,
    /// A `crit` header member: latchd understands no extensions (RFC 7515 §4.1.11).
    Crit,
    /// A `jku`, `jwk`, `x5u` or `x5c` header member: keys are never taken from the token.
    EmbeddedKey,
    /// The HMAC does not match (checked in constant time by ring).
    BadSignature,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A `NumericDate` or counter claim is not a JSON integer in range.
    NotInteger(&'static str),
    /// A claim has the wrong JSON type or form (e.g. `sub` that is not a UUID).
    BadClaim(&'static str),
    /// `exp` is at or before `now - leeway`.
    Expired,
    /// `nbf` is after `now + leeway`.
    NotYetValid,
    /// `iat` is after `now + leeway`.
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` is not the configured audience.
    WrongAudience,
}

impl TokenError {
    /// A short, stable, lowercase label for logs and metrics.
    pub fn reason(self) -> &'static str {
        // Keep REASONS in step: the unit test below lists every variant.
        match self {
            Self::TooLong => "too_long",
            Self::Segments => "segments",
            Self::Base64 => "base64",
            Self::NotJsonObject => "not_json_object",
            Self::DuplicateMember => "duplicate_member",
            Self::AlgNotHs256 => "alg",
            Self::WrongTyp => "typ",
            Self::UnknownKid => "kid",
            Self::Crit => "crit",
            Self::EmbeddedKey => "embedded_key",
            Self::BadSignature => "signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::NotInteger(_) => "not_integer",
            Self::BadClaim(_) => "bad_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "issuer",
            Self::WrongAudience => "audience",
        }
    }
}

impl TokenError {
    /// Every label [`TokenError::reason`] can return, in declaration order.
    pub const REASONS: [&'static str; 19] = [
        "too_long",
        "segments",
        "base64",
        "not_json_object",
        "duplicate_member",
        "alg",
        "typ",
        "kid",
        "crit",
        "embedded_key",
        "signature",
        "missing_claim",
        "not_integer",
        "bad_claim",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "issuer",
        "audience",
    ];
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => f.write_str("token too long"),
            Self::Segments => f.write_str("token is not three segments"),
            Self::Base64 => f.write_str("segment is not canonical base64url"),
            Self::NotJsonObject => f.write_str("segment is not a json object"),
            Self::DuplicateMember => f.write_str("duplicated json member"),
            Self::AlgNotHs256 => f.write_str("alg is not HS256"),
            Self::WrongTyp => f.write_str("typ is not at+jwt"),
            Self::UnknownKid => f.write_str("unknown kid"),
            Self::Crit => f.write_str("crit header present"),
            Self::EmbeddedKey => f.write_str("embedded key header present"),
            Self::BadSignature => f.write_str("bad signature"),
            Self::MissingClaim(name) => write!(f, "missing claim {name}"),
            Self::NotInteger(name) => write!(f, "claim {name} is not an integer"),
            Self::BadClaim(name) => write!(f, "claim {name} is malformed"),
            Self::Expired => f.write_str("token expired"),
            Self::NotYetValid => f.write_str("token not yet valid"),
            Self::IssuedInFuture => f.write_str("token issued in the future"),
            Self::WrongIssuer => f.write_str("wrong issuer"),
            Self::WrongAudience => f.write_str("wrong audience"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Why a signing key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Fewer than `MIN_KEY_BYTES` bytes (RFC 7518 §3.2 demands at least the hash size).
    TooShort {
        /// Length of the refused key in bytes.
        len: usize,
    },
    /// The configured text is not canonical unpadded base64url.
    NotBase64Url,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "signing key is {len} bytes; HS256 needs at least {} (RFC 7518 §3.2)",
                super::MIN_KEY_BYTES
            ),
            Self::NotBase64Url => f.write_str("signing key is not unpadded base64url"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Every `TokenError`, written out so that a new variant breaks the tests until it is listed
/// here and in [`TokenError::REASONS`].
#[cfg(test)]
pub(crate) fn every_token_error() -> Vec<TokenError> {
    let all = vec![
        TokenError::TooLong,
        TokenError::Segments,
        TokenError::Base64,
        TokenError::NotJsonObject,
        TokenError::DuplicateMember,
        TokenError::AlgNotHs256,
        TokenError::WrongTyp,
        TokenError::UnknownKid,
        TokenError::Crit,
        TokenError::EmbeddedKey,
        TokenError::BadSignature,
        TokenError::MissingClaim("sub"),
        TokenError::NotInteger("exp"),
        TokenError::BadClaim("sub"),
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
    ];
    for e in &all {
        // No `_` arm: adding a variant fails to compile here.
        match e {
            TokenError::TooLong
            | TokenError::Segments
            | TokenError::Base64
            | TokenError::NotJsonObject
            | TokenError::DuplicateMember
            | TokenError::AlgNotHs256
            | TokenError::WrongTyp
            | TokenError::UnknownKid
            | TokenError::Crit
            | TokenError::EmbeddedKey
            | TokenError::BadSignature
            | TokenError::MissingClaim(_)
            | TokenError::NotInteger(_)
            | TokenError::BadClaim(_)
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::IssuedInFuture
            | TokenError::WrongIssuer
            | TokenError::WrongAudience => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lists_every_variant_once_in_order() {
        let reasons: Vec<&str> = every_token_error()
            .into_iter()
            .map(TokenError::reason)
            .collect();
        assert_eq!(reasons, TokenError::REASONS);
    }
}
