//! Tests of hashing and verification: PHC format, round trips, every malformed-PHC error,
//! rehash decisions and a published PBKDF2-HMAC-SHA256 vector. Low iteration counts keep them fast.

use std::num::NonZeroU32;

use ring::rand::SystemRandom;

use super::*;

const FAST: NonZeroU32 = match NonZeroU32::new(1000) {
    Some(n) => n,
    None => panic!("1000 is not zero"),
};

fn iterations(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("test iteration counts are not zero")
}

fn fast_hash(password: &str) -> String {
    hash(password, FAST, &SystemRandom::new())
        .expect("hash")
        .into_string()
}

/// A valid hash of "password" (salt "salt", 1 round) to mutate one field at a time.
const VALID: &str = "$pbkdf2-sha256$i=1$c2FsdA$Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs";

#[test]
fn round_trip_matches() {
    let phc = fast_hash("correct horse battery staple");
    assert_eq!(
        verify("correct horse battery staple", &phc),
        Ok(Verified::Match)
    );
}

#[test]
fn wrong_password_is_mismatch() {
    let phc = fast_hash("correct horse battery staple");
    assert_eq!(
        verify("correct horse battery stapler", &phc),
        Ok(Verified::Mismatch)
    );
    assert_eq!(verify("", &phc), Ok(Verified::Mismatch));
}

#[test]
fn phc_format_is_exact() {
    let phc = fast_hash("correct horse battery staple");
    let rest = phc
        .strip_prefix("$pbkdf2-sha256$i=1000$")
        .expect("id and parameters");
    let (salt, key) = rest.split_once('$').expect("salt and key");
    assert_eq!(salt.len(), 22, "16 bytes unpadded: {phc}");
    assert_eq!(key.len(), 43, "32 bytes unpadded: {phc}");
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    assert!(
        b64(salt) && b64(key),
        "standard alphabet, no padding: {phc}"
    );
}

#[test]
fn same_password_hashes_differ_by_salt() {
    let a = fast_hash("correct horse battery staple");
    let b = fast_hash("correct horse battery staple");
    assert_ne!(a, b);
    assert_eq!(
        verify("correct horse battery staple", &b),
        Ok(Verified::Match)
    );
}

#[test]
fn known_answer_vectors_verify_through_the_phc_path() {
    // P="password", S="salt", c=1, dkLen=32:
    // 120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b (RFC 6070 inputs, SHA-256).
    assert_eq!(verify("password", VALID), Ok(Verified::Match));
    // RFC 7914 §11, P="passwd", S="salt", c=1: the first 32 bytes of its 64-byte answer
    // 55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc, because PBKDF2
    // computes each 32-byte block independently.
    let rfc7914 = "$pbkdf2-sha256$i=1$c2FsdA$VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw";
    assert_eq!(verify("passwd", rfc7914), Ok(Verified::Match));
    assert_eq!(verify("password", rfc7914), Ok(Verified::Mismatch));
    // The same vector reached through derive and our encoder, not only through verify.
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::derive(ALGORITHM, iterations(1), b"salt", b"password", &mut key);
    assert_eq!(Phc::format(iterations(1), b"salt", &key), VALID);
}

/// Checks that each `(name, phc, error)` case fails with its own error and is due a rehash.
fn assert_each_rejected(cases: &[(&str, String, PasswordError)]) {
    for (name, phc, want) in cases {
        assert_eq!(verify("password", phc), Err(*want), "{name}: {phc}");
        assert!(
            needs_rehash(phc, FAST),
            "{name}: unreadable hashes are replaced"
        );
    }
}

#[test]
fn malformed_structure_and_iterations_each_have_their_own_error() {
    use PasswordError as E;
    let with = |from: &str, to: &str| VALID.replacen(from, to, 1);
    assert_each_rejected(&[
        ("empty", String::new(), E::NotPhc),
        ("no leading $", VALID[1..].to_owned(), E::NotPhc),
        (
            "missing key",
            "$pbkdf2-sha256$i=1$c2FsdA".to_owned(),
            E::NotPhc,
        ),
        ("extra field", format!("{VALID}$x"), E::NotPhc),
        ("sha1", with("sha256", "sha1"), E::UnknownAlgorithm),
        (
            "argon2",
            with("pbkdf2-sha256", "argon2id"),
            E::UnknownAlgorithm,
        ),
        ("no i=", with("i=1", "1"), E::BadIterations),
        ("other param", with("i=1", "r=1"), E::BadIterations),
        ("empty i", with("i=1", "i="), E::BadIterations),
        ("letters", with("i=1", "i=1k"), E::BadIterations),
        ("sign", with("i=1", "i=+1"), E::BadIterations),
        ("negative", with("i=1", "i=-1"), E::BadIterations),
        ("leading zero", with("i=1", "i=01"), E::BadIterations),
        ("two params", with("i=1", "i=1,l=32"), E::BadIterations),
        ("zero", with("i=1", "i=0"), E::ZeroIterations),
        ("above cap", with("i=1", "i=10000001"), E::TooManyIterations),
        (
            "above u32",
            with("i=1", "i=4294967296"),
            E::TooManyIterations,
        ),
        (
            "above u64",
            with("i=1", "i=99999999999999999999999"),
            E::TooManyIterations,
        ),
    ]);
}

#[test]
fn malformed_salt_and_key_each_have_their_own_error() {
    use PasswordError as E;
    let with = |from: &str, to: &str| VALID.replacen(from, to, 1);
    let long_salt = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        [7u8; MAX_SALT_BYTES + 1],
    );
    let key = "Eg+2z/z4syxD5yJSVsT4N6hlSMkszDVICAWYfLcL4Xs";
    assert_each_rejected(&[
        ("salt padded", with("c2FsdA", "c2FsdA=="), E::BadSalt),
        ("salt urlsafe char", with("c2FsdA", "c2Fs-A"), E::BadSalt),
        ("salt passlib dot", with("c2FsdA", "c2Fs.A"), E::BadSalt),
        ("salt trailing bits", with("c2FsdA", "c2FsdB"), E::BadSalt),
        ("salt empty", with("c2FsdA", ""), E::SaltLength),
        ("salt too long", with("c2FsdA", &long_salt), E::SaltLength),
        ("key padded", format!("{VALID}="), E::BadHash),
        ("key space", with("Eg+2", "Eg 2"), E::BadHash),
        ("key cut mid-byte", with(key, &key[..42]), E::BadHash),
        ("key 30 bytes", with(key, &key[..40]), E::HashLength),
        ("key 33 bytes", format!("{VALID}AAA"), E::HashLength),
    ]);
    // At the salt limit is still accepted.
    let max_salt = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        [7u8; MAX_SALT_BYTES],
    );
    assert_eq!(
        verify("password", &with("c2FsdA", &max_salt)),
        Ok(Verified::Mismatch)
    );
}

#[test]
fn iteration_cap_is_accepted_and_checked_on_hash() {
    let at_cap = VALID.replace("i=1", &format!("i={MAX_ITERATIONS}"));
    assert!(Phc::parse(&at_cap).is_ok());
    let rng = SystemRandom::new();
    assert_eq!(
        hash("x", iterations(MAX_ITERATIONS + 1), &rng).err(),
        Some(PasswordError::TooManyIterations)
    );
    assert_eq!(
        Hasher::new(iterations(MAX_ITERATIONS + 1)).err(),
        Some(PasswordError::TooManyIterations)
    );
}

#[test]
fn needs_rehash_only_below_the_configured_iterations() {
    let phc = fast_hash("correct horse battery staple");
    assert!(needs_rehash(&phc, iterations(1001)));
    assert!(needs_rehash(&phc, DEFAULT_ITERATIONS));
    assert!(!needs_rehash(&phc, FAST));
    assert!(!needs_rehash(&phc, iterations(999)), "never downgrade");
    let hasher = Hasher::new(iterations(2000)).expect("hasher");
    assert!(hasher.needs_rehash(&phc));
    assert!(!hasher.needs_rehash(hasher.hash("x").expect("hash").as_str()));
}

#[test]
fn hasher_round_trip_uses_its_iterations() {
    let hasher = Hasher::new(FAST).expect("hasher");
    assert_eq!(hasher.iterations(), FAST);
    let phc = hasher.hash("correct horse battery staple").expect("hash");
    assert!(phc.as_str().starts_with("$pbkdf2-sha256$i=1000$"));
    assert_eq!(
        hasher.verify("correct horse battery staple", phc.as_str()),
        Ok(Verified::Match)
    );
    assert_eq!(
        hasher.verify("Correct horse battery staple", phc.as_str()),
        Ok(Verified::Mismatch)
    );
}

#[test]
fn dummy_costs_a_full_verify_at_the_configured_iterations() {
    let hasher = Hasher::new(iterations(1234)).expect("hasher");
    // Same parse path and the same work as a real hash: well-formed, same iteration count.
    let dummy = Phc::parse(&hasher.dummy).expect("the dummy is a valid PHC string");
    assert_eq!(dummy.iterations, iterations(1234));
    assert_eq!(dummy.salt.len(), SALT_BYTES);
    assert_eq!(verify("", &hasher.dummy), Ok(Verified::Mismatch));
    hasher.verify_dummy("correct horse battery staple");
}

#[test]
fn debug_hides_salt_and_key() {
    let phc = hash("pw", FAST, &SystemRandom::new()).expect("hash");
    let shown = format!("{phc:?}");
    assert_eq!(shown, "PasswordHash(\"$pbkdf2-sha256$i=1000$…\")");
    let hasher = format!("{:?}", Hasher::new(FAST).expect("hasher"));
    assert!(!hasher.contains("AAAA"), "{hasher}");
}

#[test]
fn errors_display_short_lowercase_text() {
    for err in [
        PasswordError::NotPhc,
        PasswordError::TooManyIterations,
        PasswordError::MinCharsTooLow { min_chars: 6 },
    ] {
        let text = err.to_string();
        assert!(text.starts_with(char::is_lowercase), "{text}");
    }
    assert_eq!(
        PasswordError::MinCharsTooLow { min_chars: 6 }.to_string(),
        "minimum password length 6 is below 8"
    );
}

/// The user's code salt of the recovery-code tests.
const CODE_SALT: [u8; SALT_BYTES] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        write!(out, "{b:02x}").unwrap();
        out
    })
}

#[test]
fn hash_code_is_pbkdf2_hmac_sha256_of_the_normalized_text() {
    // Computed independently: Python's hashlib.pbkdf2_hmac("sha256", code, salt, n).
    assert_eq!(
        hex(&hash_code("0123-4567-89ab", &CODE_SALT, iterations(1000))),
        "94bdc1171d71faa191bdc6ffdd56f9992b48b727c4422d6c4d4ff3dc312ca329"
    );
    assert_eq!(
        hex(&hash_code("0123-4567-89ab", &CODE_SALT, iterations(1))),
        "8ba5ebe0d7318cd511ca3713509ae6307f3affeb694f0bc9560b8af7c7f41eba"
    );
    // The same scheme as password hashes: a PHC string of it verifies the code.
    let key = hash_code("0123-4567-89ab", &CODE_SALT, FAST);
    let phc = Phc::format(FAST, &CODE_SALT, &key);
    assert_eq!(verify("0123-4567-89ab", &phc), Ok(Verified::Match));
}

#[test]
fn code_matches_finds_the_index_of_the_matching_hash() {
    let codes: Vec<String> = (0..10).map(|i| format!("0000-0000-000{i}")).collect();
    let stored: Vec<[u8; KEY_BYTES]> = codes
        .iter()
        .map(|c| hash_code(c, &CODE_SALT, FAST))
        .collect();
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(
            code_matches(code, &CODE_SALT, FAST, &stored),
            Some(i),
            "{code}"
        );
    }
    // A used code whose hash was removed matches nothing; the others keep their new places.
    let rest = &stored[1..];
    assert_eq!(code_matches(&codes[0], &CODE_SALT, FAST, rest), None);
    assert_eq!(code_matches(&codes[9], &CODE_SALT, FAST, rest), Some(8));
}

#[test]
fn code_matches_refuses_other_codes_salts_and_work_factors() {
    let stored = [hash_code("0123-4567-89ab", &CODE_SALT, FAST)];
    let other_salt = [9u8; SALT_BYTES];
    assert_eq!(
        code_matches("0123-4567-89ab", &CODE_SALT, FAST, &stored),
        Some(0)
    );
    assert_eq!(
        code_matches("0123-4567-89ac", &CODE_SALT, FAST, &stored),
        None
    );
    assert_eq!(
        code_matches("012345678 9ab", &CODE_SALT, FAST, &stored),
        None,
        "not normalized"
    );
    assert_eq!(
        code_matches("0123-4567-89ab", &other_salt, FAST, &stored),
        None
    );
    assert_eq!(
        code_matches("0123-4567-89ab", &CODE_SALT, iterations(1001), &stored),
        None
    );
    assert_eq!(code_matches("0123-4567-89ab", &CODE_SALT, FAST, &[]), None);
}

#[test]
fn code_matches_takes_the_first_of_duplicate_hashes() {
    let a = hash_code("aaaa-aaaa-aaaa", &CODE_SALT, FAST);
    let b = hash_code("bbbb-bbbb-bbbb", &CODE_SALT, FAST);
    assert_eq!(
        code_matches("bbbb-bbbb-bbbb", &CODE_SALT, FAST, &[a, b, a, b]),
        Some(1)
    );
}
