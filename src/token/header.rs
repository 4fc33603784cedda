//! The JOSE header of an access token (RFC 7515 §4, RFC 9068 §2.1).

use std::borrow::Cow;

use super::json::{JsonError, Object, Value};
use super::TokenError;

/// The one header member latchd needs once every header rule has held.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) kid: Cow<'a, str>,
}

impl<'a> Header<'a> {
    /// Parses a decoded header and applies the header rules of API.md, in this order:
    /// JSON object without duplicates, no `crit`, no embedded or remote keys, `alg` exactly
    /// `HS256`, `typ` exactly `at+jwt`, a string `kid`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, TokenError> {
        let mut obj = Object::new(bytes).map_err(json_error)?;
        let mut seen = 0u8;
        let (mut alg_ok, mut typ_ok, mut crit, mut embedded) = (false, false, false, false);
        let mut kid = None;
        while let Some(key) = obj.next_key().map_err(json_error)? {
            let bit = match &*key {
                "alg" => 1,
                "typ" => 2,
                "kid" => 4,
                "crit" => 8,
                "jku" => 16,
                "jwk" => 32,
                "x5u" => 64,
                "x5c" => 128,
                _ => {
                    obj.unknown_key(key).map_err(json_error)?;
                    continue;
                }
            };
            if seen & bit != 0 {
                return Err(TokenError::DuplicateMember);
            }
            seen |= bit;
            let value = obj.value().map_err(json_error)?;
            match (&*key, value) {
                ("alg", Value::Str(alg)) => alg_ok = alg == "HS256",
                ("typ", Value::Str(typ)) => typ_ok = typ == "at+jwt",
                ("kid", Value::Str(id)) => kid = Some(id),
                ("crit", _) => crit = true,
                ("jku" | "jwk" | "x5u" | "x5c", _) => embedded = true,
                // alg, typ or kid of a type other than string.
                _ => {}
            }
        }
        if crit {
            return Err(TokenError::Crit);
        }
        if embedded {
            return Err(TokenError::EmbeddedKey);
        }
        if !alg_ok {
            return Err(TokenError::AlgNotHs256);
        }
        if !typ_ok {
            return Err(TokenError::WrongTyp);
        }
        Ok(Self {
            kid: kid.ok_or(TokenError::UnknownKid)?,
        })
    }
}

pub(crate) fn json_error(err: JsonError) -> TokenError {
    match err {
        JsonError::Malformed => TokenError::NotJsonObject,
        JsonError::Duplicate => TokenError::DuplicateMember,
    }
}
