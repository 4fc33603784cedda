//! What the sign-in pages hand a browser: the `latchd_session` cookie and the CSRF tokens of
//! their forms. Pure: randomness and keys come in, no I/O, no clock.
//!
//! The cookie is 32 random bytes as 43 characters of base64url; the store keeps only their
//! SHA-256, so (as with refresh tokens) the database alone never yields a usable cookie.
//!
//! A form's CSRF token is bound to the browser: the pages give each browser a random nonce in
//! a cookie of its own, and every form carries `HMAC-SHA256(form key, "latchd-form-v1" ||
//! nonce)`. A page on another site can neither read the nonce nor compute the
//! MAC. (A sibling subdomain can set cookies for the parent domain; that is why the nonce
//! cookie uses the `__Host-` prefix when it is Secure, and why the pages also check `Origin`
//! and `Sec-Fetch-Site`.)

use std::fmt;

use ring::digest;

use super::b64;
use super::keyring::FormKey;

/// Length of the cookie's text.
pub const SESSION_COOKIE_CHARS: usize = 43;
const FORM_LABEL: &[u8] = b"latchd-form-v1";

/// A browser session's cookie value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCookie(String);

impl SessionCookie {
    /// The cookie for `random`, and the SHA-256 the store keeps of it.
    pub fn mint(random: &[u8; 32]) -> (Self, [u8; 32]) {
        (Self(b64::encode(random)), hash(random))
    }

    /// The value to set.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCookie(..)")
    }
}

/// The SHA-256 of a presented cookie value, if it has the shape latchd mints (43 canonical
/// base64url characters for 32 bytes); anything else is not a session cookie.
pub fn cookie_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != SESSION_COOKIE_CHARS {
        return None;
    }
    let mut raw = [0u8; 32];
    let len = b64::decode_into(text.as_bytes(), &mut raw).ok()?;
    (len == raw.len()).then(|| hash(&raw))
}

/// The nonce cookie's value for 16 random bytes.
pub fn form_nonce(random: &[u8; 16]) -> String {
    b64::encode(random)
}

/// Whether `text` has the shape of a nonce latchd mints (22 characters for 16 bytes).
pub fn is_form_nonce(text: &str) -> bool {
    text.len() == 22 && b64::decode(text.as_bytes()).is_ok_and(|n| n.len() == 16)
}

/// The CSRF token forms carry for the browser holding `nonce`.
pub fn form_token(key: &FormKey, nonce: &str) -> String {
    b64::encode(key.tag(&form_message(nonce)).as_ref())
}

/// Whether `token` is the CSRF token of the browser holding `nonce` (constant time).
pub fn form_token_valid(key: &FormKey, nonce: &str, token: &str) -> bool {
    let Ok(tag) = b64::decode(token.as_bytes()) else {
        return false;
    };
    is_form_nonce(nonce) && key.verify(&form_message(nonce), &tag)
}

fn form_message(nonce: &str) -> Vec<u8> {
    [FORM_LABEL, b"\0", nonce.as_bytes()].concat()
}

fn hash(raw: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, raw).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FormKey {
        FormKey::derive(&[7; 32])
    }

    #[test]
    fn a_minted_cookie_hashes_back_to_what_the_store_keeps() {
        let (cookie, stored) = SessionCookie::mint(&[9; 32]);
        assert_eq!(cookie.as_str().len(), SESSION_COOKIE_CHARS);
        assert_eq!(cookie_hash(cookie.as_str()), Some(stored));
        assert_ne!(SessionCookie::mint(&[8; 32]).1, stored);
        assert!(!format!("{cookie:?}").contains(cookie.as_str()));
    }

    #[test]
    fn anything_but_a_minted_shape_is_no_cookie() {
        let (cookie, _) = SessionCookie::mint(&[9; 32]);
        let text = cookie.as_str();
        for bad in [
            String::new(),
            text[..42].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[..42]),
            text.replace(&text[..1], "+"),
            "eyJhbGciOiJIUzI1NiJ9.e30.c2ln".to_owned(), // a JWT is never a cookie
            "a".repeat(43),                             // non-zero trailing bits
        ] {
            assert_eq!(cookie_hash(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_form_token_is_bound_to_its_nonce_and_key() {
        let nonce = form_nonce(&[1; 16]);
        let token = form_token(&key(), &nonce);
        assert!(form_token_valid(&key(), &nonce, &token));
        let other_nonce = form_nonce(&[2; 16]);
        assert!(
            !form_token_valid(&key(), &other_nonce, &token),
            "another browser"
        );
        assert!(
            !form_token_valid(&FormKey::derive(&[8; 32]), &nonce, &token),
            "another server"
        );
        for bad in ["", "x", &token[..token.len() - 1], "AAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(!form_token_valid(&key(), &nonce, bad), "{bad:?}");
        }
        // A nonce latchd did not mint is refused even with a matching MAC.
        let odd = "not-a-nonce";
        assert!(!form_token_valid(&key(), odd, &form_token(&key(), odd)));
    }
}
