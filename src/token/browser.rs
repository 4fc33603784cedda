//! The CSRF tokens of the sign-in pages' forms (the `latchd_session` cookie itself is an
//! [`Opaque`](super::opaque::Opaque) token). Pure: randomness and keys come in, no I/O, no
//! clock.
//!
//! A form's CSRF token is bound to the browser: the pages give each browser a random nonce in
//! a cookie of its own, and every form carries `HMAC-SHA256(form key, "latchd-form-v1" ||
//! nonce)`. A page on another site can neither read the nonce nor compute the
//! MAC. (A sibling subdomain can set cookies for the parent domain; that is why the nonce
//! cookie uses the `__Host-` prefix when it is Secure, and why the pages also check `Origin`
//! and `Sec-Fetch-Site`.)

use super::b64;
use super::keyring::FormKey;

const FORM_LABEL: &[u8] = b"latchd-form-v1";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FormKey {
        FormKey::derive(&[7; 32])
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
