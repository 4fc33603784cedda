//! Rule-by-rule tests of the verifier. Every rejection case starts from a token that is
//! otherwise valid and correctly signed, so removing the check makes its case fail.

#![allow(clippy::too_many_lines)] // one table row per rule reads better than split tables

use serde_json::{json, Value as Json};
use uuid::Uuid;

use super::claims::{RawClaims, Typed};
use super::*;

mod fixture {
    use super::*;

    pub(super) const NOW: UnixTime = UnixTime(1_800_000_000);
    pub(super) const LEEWAY: i64 = 5;
    pub(super) const SUB: &str = "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e10";
    pub(super) const JTI: &str = "0b5e2f3a-7c1d-4e8f-9a6b-5d4c3b2a1f00";
    pub(super) const SID: &str = "a3c9e1d7-5b2f-4a68-8e0c-1f2d3e4c5b6a";

    pub(super) fn secret() -> KeySecret {
        KeySecret::from_bytes(vec![0x42; 32]).unwrap()
    }

    pub(super) fn verifier() -> AccessTokens {
        AccessTokens::new(
            Keyring::new(&secret(), &[]),
            Policy::new("latchd", "api", "web", 5),
        )
    }

    pub(super) fn header() -> Json {
        json!({"alg": "HS256", "typ": "at+jwt", "kid": secret().kid()})
    }

    pub(super) fn claims() -> Json {
        json!({
            "iss": "latchd", "aud": "api", "sub": SUB, "exp": NOW.0 + 900, "iat": NOW.0,
            "nbf": NOW.0, "jti": JTI, "sid": SID, "ver": 3, "roles": ["admin"], "client_id": "web"
        })
    }

    /// Signs `header.payload` made from the exact JSON texts given, under `secret()`.
    pub(super) fn sign_raw(header: &str, claims: &str) -> String {
        sign_segments(
            &b64::encode(header.as_bytes()),
            &b64::encode(claims.as_bytes()),
        )
    }

    /// Signs already-encoded segments, whatever they hold.
    pub(super) fn sign_segments(header: &str, payload: &str) -> String {
        let input = format!("{header}.{payload}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret().as_bytes());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64::encode(tag.as_ref()))
    }

    pub(super) fn with_claims(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> String {
        let mut c = claims();
        edit(c.as_object_mut().unwrap());
        sign_raw(&header().to_string(), &c.to_string())
    }

    pub(super) fn verify(token: &str) -> Result<AccessClaims, TokenError> {
        verifier().verify(token.as_bytes(), NOW)
    }
}

use fixture::{verify, with_claims, NOW};

#[test]
fn the_fixture_token_is_valid() {
    let got = verify(&with_claims(|_| {})).unwrap();
    assert_eq!(got.sub.to_string(), fixture::SUB);
    assert_eq!(got.jti.to_string(), fixture::JTI);
    assert_eq!(got.sid.to_string(), fixture::SID);
    assert_eq!(got.ver, 3);
    assert_eq!(got.roles, ["admin"]);
    assert_eq!(
        got.amr, None,
        "a token without amr (issued before latchd wrote it) is valid"
    );
    assert_eq!(got.exp, NOW.plus(900));
    let with_amr = verify(&with_claims(|c| {
        c.insert("amr".into(), json!(["pwd", "otp"]));
    }))
    .unwrap();
    assert!(with_amr.amr.is_some_and(|amr| amr == ["pwd", "otp"]));
}

#[test]
fn signed_tokens_round_trip_with_the_exact_contract_header_and_claims() {
    let tokens = fixture::verifier();
    let claims = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 0,
        roles: ["admin", "qu\"ote\\d\n"].into_iter().collect(),
        amr: Some(["pwd", "otp"].into_iter().collect()),
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let token = tokens.sign(&claims);
    assert_eq!(tokens.verify(token.as_bytes(), NOW), Ok(claims.clone()));

    let segments: Vec<&str> = token.split('.').collect();
    let header: Json =
        serde_json::from_slice(&b64::decode(segments[0].as_bytes()).unwrap()).unwrap();
    assert_eq!(header, fixture::header());
    assert_eq!(
        header.as_object().unwrap().len(),
        3,
        "exactly alg, typ, kid"
    );
    let payload: Json =
        serde_json::from_slice(&b64::decode(segments[1].as_bytes()).unwrap()).unwrap();
    let mut keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amr",
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "roles",
            "sid",
            "sub",
            "ver"
        ]
    );
    assert_eq!(payload["client_id"], "web");
    assert_eq!(payload["iss"], "latchd");
    assert_eq!(payload["aud"], "api");
    assert_eq!(payload["sub"], claims.sub.to_string());
    assert_eq!(payload["roles"][1], "qu\"ote\\d\n");
    assert_eq!(payload["amr"], json!(["pwd", "otp"]));
}

#[test]
fn rfc_7515_appendix_a1_signature_verifies_at_the_signature_layer() {
    // RFC 7515 A.1: its HS256 key and JWS. The signature layer accepts it; the verifier then
    // refuses it, because its header has typ "JWT" and no kid.
    let key = b64::decode(
        b"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
    )
    .unwrap();
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
        .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
        .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let secret = KeySecret::from_bytes(key).unwrap();
    let ring = Keyring::new(&secret, &[]);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = b64::decode(sig.as_bytes()).unwrap();
    ring.signer().verify(input.as_bytes(), &sig).unwrap();
    assert_eq!(
        ring.signer()
            .verify(b"eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.e30", &sig),
        Err(TokenError::BadSignature)
    );
    let tokens = AccessTokens::new(ring, Policy::new("joe", "joe", "joe", 5));
    assert_eq!(
        tokens.verify(token.as_bytes(), UnixTime(1_300_000_000)),
        Err(TokenError::WrongTyp)
    );
}

#[test]
fn header_rules_each_have_their_own_error() {
    let kid = fixture::secret().kid();
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "alg none",
            format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg lowercase",
            format!(r#"{{"alg":"hs256","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg HS512",
            format!(r#"{{"alg":"HS512","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg RS256",
            format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg ES256",
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg padded",
            format!(r#"{{"alg":"HS256 ","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg missing",
            format!(r#"{{"typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "alg not a string",
            format!(r#"{{"alg":256,"typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::AlgNotHs256,
        ),
        (
            "typ JWT",
            format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#),
            TokenError::WrongTyp,
        ),
        (
            "typ media type",
            format!(r#"{{"alg":"HS256","typ":"application/at+jwt","kid":"{kid}"}}"#),
            TokenError::WrongTyp,
        ),
        (
            "typ missing",
            format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            TokenError::WrongTyp,
        ),
        (
            "kid unknown",
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            TokenError::UnknownKid,
        ),
        (
            "kid missing",
            r#"{"alg":"HS256","typ":"at+jwt"}"#.to_owned(),
            TokenError::UnknownKid,
        ),
        (
            "kid not a string",
            r#"{"alg":"HS256","typ":"at+jwt","kid":1}"#.to_owned(),
            TokenError::UnknownKid,
        ),
        (
            "crit",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#),
            TokenError::Crit,
        ),
        (
            "jku",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","jku":"https://x"}}"#),
            TokenError::EmbeddedKey,
        ),
        (
            "jwk",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","jwk":{{"kty":"oct"}}}}"#),
            TokenError::EmbeddedKey,
        ),
        (
            "x5u",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","x5u":"https://x"}}"#),
            TokenError::EmbeddedKey,
        ),
        (
            "x5c",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","x5c":["MII"]}}"#),
            TokenError::EmbeddedKey,
        ),
        (
            "dup alg",
            format!(r#"{{"alg":"HS256","alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            TokenError::DuplicateMember,
        ),
        (
            "dup escaped kid",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","ki\u0064":"{kid}"}}"#),
            TokenError::DuplicateMember,
        ),
        (
            "dup unknown",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","x":1,"x":1}}"#),
            TokenError::DuplicateMember,
        ),
        ("array", "[]".to_owned(), TokenError::NotJsonObject),
        ("string", r#""HS256""#.to_owned(), TokenError::NotJsonObject),
        (
            "not json",
            "alg=HS256".to_owned(),
            TokenError::NotJsonObject,
        ),
        (
            "trailing bytes",
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}x"#),
            TokenError::NotJsonObject,
        ),
    ];
    for (name, header, want) in cases {
        let token = fixture::sign_raw(&header, &fixture::claims().to_string());
        assert_eq!(verify(&token).err(), Some(want), "{name}");
    }
}

#[test]
fn header_with_other_order_or_extra_members_still_verifies() {
    // Not byte-identical to the canonical header, so it takes the parsing path.
    let kid = fixture::secret().kid();
    for header in [
        format!(r#"{{"kid":"{kid}","typ":"at+jwt","alg":"HS256"}}"#),
        format!(r#"{{ "alg" : "HS256", "typ":"at+jwt", "kid":"{kid}", "cty":"x" }}"#),
    ] {
        let token = fixture::sign_raw(&header, &fixture::claims().to_string());
        assert!(verify(&token).is_ok(), "{header}");
    }
}

#[test]
fn segment_and_size_rules() {
    let valid = with_claims(|_| {});
    let (input, sig) = valid.rsplit_once('.').unwrap();
    let cases = [
        ("two segments", input.to_owned(), TokenError::Segments),
        ("four segments", format!("{valid}.x"), TokenError::Segments),
        ("empty", String::new(), TokenError::Segments),
        ("dots only", "..".to_owned(), TokenError::NotJsonObject),
        (
            "empty signature",
            format!("{input}."),
            TokenError::BadSignature,
        ),
        (
            "too long",
            format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
            TokenError::TooLong,
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(verify(&token).err(), Some(want), "{name}");
    }
    assert!(verify(&format!("{input}.{sig}")).is_ok());
}

#[test]
fn the_size_cap_is_exactly_8_kib() {
    // Grow an ignored claim until the signed token is exactly MAX_TOKEN_BYTES long.
    let mut filler = 0;
    let token = loop {
        let token = with_claims(|c| {
            c.insert("pad".into(), json!("x".repeat(filler)));
        });
        if token.len() >= MAX_TOKEN_BYTES {
            break token;
        }
        filler += 1;
    };
    if token.len() == MAX_TOKEN_BYTES {
        assert!(verify(&token).is_ok(), "8192 bytes is allowed");
    }
    let over = with_claims(|c| {
        c.insert("pad".into(), json!("x".repeat(filler + 3)));
    });
    assert!(over.len() > MAX_TOKEN_BYTES);
    assert_eq!(verify(&over).err(), Some(TokenError::TooLong));
}

#[test]
fn non_canonical_base64url_is_refused_in_every_segment() {
    let valid = with_claims(|_| {});
    let seg: Vec<&str> = valid.split('.').collect();
    let (h, p, s) = (seg[0], seg[1], seg[2]);
    // 43 characters carry 258 bits for a 256-bit signature: the last character's lowest two
    // bits are spare and zero in the canonical form. Flipping its lowest bit keeps the same
    // signature bytes but makes a second spelling of them.
    let last = s.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let trailing = alphabet.chars().nth(idx ^ 1).unwrap();
    let cases = [
        ("padded signature", format!("{h}.{p}.{s}=")),
        ("padded header", fixture::sign_segments(&format!("{h}="), p)),
        (
            "padded payload",
            fixture::sign_segments(h, &format!("{p}==")),
        ),
        (
            "plus in payload",
            fixture::sign_segments(h, &format!("{}+", &p[..p.len() - 1])),
        ),
        (
            "slash in header",
            fixture::sign_segments(&format!("/{}", &h[1..]), p),
        ),
        (
            "space in payload",
            fixture::sign_segments(h, &format!("{} {}", &p[..4], &p[4..])),
        ),
        ("newline after token", format!("{valid}\n")),
        ("space before token", format!(" {valid}")),
        (
            "trailing bits in signature",
            format!("{h}.{p}.{}{trailing}", &s[..s.len() - 1]),
        ),
    ];
    for (name, token) in cases {
        assert_eq!(verify(&token).err(), Some(TokenError::Base64), "{name}");
    }
}

#[test]
fn signature_rules() {
    let valid = with_claims(|_| {});
    let (input, sig) = valid.rsplit_once('.').unwrap();
    let mut raw = b64::decode(sig.as_bytes()).unwrap();
    raw[0] ^= 1;
    let flipped = format!("{input}.{}", b64::encode(&raw));
    let short = format!("{input}.{}", b64::encode(&raw[..31]));
    let long = format!("{input}.{}", b64::encode(&[raw.clone(), vec![0]].concat()));
    // Same kid, different key: an attacker who guessed the kid but not the key.
    let other = AccessTokens::new(
        Keyring::new(&fixture::secret(), &[]),
        Policy::new("latchd", "api", "web", 5),
    );
    let (tampered_input, _) = with_claims(|c| {
        c.insert("roles".into(), json!(["admin", "root"]));
    })
    .rsplit_once('.')
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .unwrap();
    let swapped = format!("{tampered_input}.{sig}");
    for (name, token) in [
        ("flipped bit", flipped),
        ("31 bytes", short),
        ("33 bytes", long),
        ("payload swapped", swapped),
    ] {
        assert_eq!(
            other.verify(token.as_bytes(), NOW).err(),
            Some(TokenError::BadSignature),
            "{name}"
        );
    }
    let wrong_key = AccessTokens::new(
        Keyring::new(&KeySecret::from_bytes(vec![7; 32]).unwrap(), &[]),
        Policy::new("latchd", "api", "web", 5),
    );
    assert_eq!(
        wrong_key.verify(valid.as_bytes(), NOW).err(),
        Some(TokenError::UnknownKid),
        "a key the ring does not hold is not even tried"
    );
}

#[test]
fn claim_rules_each_have_their_own_error() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Json>)>;
    let set = |k: &'static str, v: Json| -> Edit { Box::new(move |c| drop(c.insert(k.into(), v))) };
    let del = |k: &'static str| -> Edit { Box::new(move |c| drop(c.remove(k))) };
    let now = NOW.0;
    let lw = fixture::LEEWAY;
    let cases: Vec<(&str, Edit, TokenError)> = vec![
        ("exp missing", del("exp"), TokenError::MissingClaim("exp")),
        ("iat missing", del("iat"), TokenError::MissingClaim("iat")),
        ("nbf missing", del("nbf"), TokenError::MissingClaim("nbf")),
        (
            "exp fractional",
            set("exp", json!(1.8e9)),
            TokenError::NotInteger("exp"),
        ),
        (
            "exp string",
            set("exp", json!("1800000900")),
            TokenError::NotInteger("exp"),
        ),
        (
            "exp null",
            set("exp", Json::Null),
            TokenError::NotInteger("exp"),
        ),
        (
            "exp beyond i64",
            set("exp", json!(u64::MAX)),
            TokenError::NotInteger("exp"),
        ),
        (
            "iat fractional",
            set("iat", json!(0.5)),
            TokenError::NotInteger("iat"),
        ),
        (
            "nbf bool",
            set("nbf", json!(true)),
            TokenError::NotInteger("nbf"),
        ),
        (
            "exp at now - leeway",
            set("exp", json!(now - lw)),
            TokenError::Expired,
        ),
        (
            "exp long ago",
            set("exp", json!(i64::MIN)),
            TokenError::Expired,
        ),
        (
            "nbf after now + leeway",
            set("nbf", json!(now + lw + 1)),
            TokenError::NotYetValid,
        ),
        (
            "iat after now + leeway",
            set("iat", json!(now + lw + 1)),
            TokenError::IssuedInFuture,
        ),
        (
            "iss wrong",
            set("iss", json!("evil")),
            TokenError::WrongIssuer,
        ),
        ("iss missing", del("iss"), TokenError::WrongIssuer),
        (
            "iss array",
            set("iss", json!(["latchd"])),
            TokenError::WrongIssuer,
        ),
        (
            "aud wrong",
            set("aud", json!("other")),
            TokenError::WrongAudience,
        ),
        ("aud missing", del("aud"), TokenError::WrongAudience),
        (
            "aud array",
            set("aud", json!(["api"])),
            TokenError::WrongAudience,
        ),
        ("sub missing", del("sub"), TokenError::MissingClaim("sub")),
        ("jti missing", del("jti"), TokenError::MissingClaim("jti")),
        ("sid missing", del("sid"), TokenError::MissingClaim("sid")),
        (
            "sub not a uuid",
            set("sub", json!("alice")),
            TokenError::BadClaim("sub"),
        ),
        (
            "sub upper case",
            set("sub", json!(fixture::SUB.to_uppercase())),
            TokenError::BadClaim("sub"),
        ),
        (
            "sub braced",
            set("sub", json!(format!("{{{}}}", fixture::SUB))),
            TokenError::BadClaim("sub"),
        ),
        (
            "jti number",
            set("jti", json!(7)),
            TokenError::BadClaim("jti"),
        ),
        (
            "sid simple form",
            set("sid", json!(fixture::SID.replace('-', ""))),
            TokenError::BadClaim("sid"),
        ),
        ("ver missing", del("ver"), TokenError::MissingClaim("ver")),
        (
            "ver negative",
            set("ver", json!(-1)),
            TokenError::NotInteger("ver"),
        ),
        (
            "ver string",
            set("ver", json!("3")),
            TokenError::NotInteger("ver"),
        ),
        (
            "roles missing",
            del("roles"),
            TokenError::MissingClaim("roles"),
        ),
        (
            "roles string",
            set("roles", json!("admin")),
            TokenError::BadClaim("roles"),
        ),
        (
            "roles mixed",
            set("roles", json!(["admin", 1])),
            TokenError::BadClaim("roles"),
        ),
        (
            "amr string",
            set("amr", json!("pwd")),
            TokenError::BadClaim("amr"),
        ),
        (
            "amr null",
            set("amr", json!(null)),
            TokenError::BadClaim("amr"),
        ),
        (
            "amr mixed",
            set("amr", json!(["pwd", 1])),
            TokenError::BadClaim("amr"),
        ),
        (
            "amr object",
            set("amr", json!({"pwd": true})),
            TokenError::BadClaim("amr"),
        ),
    ];
    for (name, edit, want) in cases {
        assert_eq!(verify(&with_claims(edit)).err(), Some(want), "{name}");
    }
}

#[test]
fn time_rules_allow_exactly_the_leeway() {
    let now = NOW.0;
    let lw = fixture::LEEWAY;
    for (name, key, value) in [
        ("exp just inside leeway", "exp", now - lw + 1),
        ("exp far future", "exp", i64::MAX),
        ("nbf at now + leeway", "nbf", now + lw),
        ("iat at now + leeway", "iat", now + lw),
        ("nbf long ago", "nbf", i64::MIN),
    ] {
        let token = with_claims(|c| drop(c.insert(key.into(), json!(value))));
        assert!(verify(&token).is_ok(), "{name}");
    }
}

#[test]
fn payload_structure_rules() {
    let h = fixture::header().to_string();
    let cases = [
        ("array", "[]".to_owned(), TokenError::NotJsonObject),
        ("number", "1".to_owned(), TokenError::NotJsonObject),
        (
            "truncated",
            "{\"iss\":\"latchd\"".to_owned(),
            TokenError::NotJsonObject,
        ),
        (
            "duplicate exp",
            fixture::claims()
                .to_string()
                .replacen('{', "{\"exp\":1,", 1),
            TokenError::DuplicateMember,
        ),
        (
            "duplicate unknown claim",
            fixture::claims()
                .to_string()
                .replacen('{', "{\"x\":1,\"x\":2,", 1),
            TokenError::DuplicateMember,
        ),
        (
            "duplicate inside an unknown claim",
            fixture::claims()
                .to_string()
                .replacen('{', "{\"x\":{\"y\":1,\"y\":2},", 1),
            TokenError::DuplicateMember,
        ),
    ];
    for (name, payload, want) in cases {
        assert_eq!(
            verify(&fixture::sign_raw(&h, &payload)).err(),
            Some(want),
            "{name}"
        );
    }
}

#[test]
fn unknown_claims_are_ignored() {
    let token = with_claims(|c| {
        c.insert("email_verified".into(), json!(true));
        c.insert("ext".into(), json!({"a": [1, {"b": null}], "c": "d"}));
    });
    assert!(verify(&token).is_ok());
}

#[test]
fn rotated_keys_keep_verifying_and_new_tokens_carry_the_new_kid() {
    let old = fixture::secret();
    let new = KeySecret::from_bytes(vec![0x43; 32]).unwrap();
    let old_token = with_claims(|_| {});
    let rotated = AccessTokens::new(
        Keyring::new(&new, std::slice::from_ref(&old)),
        Policy::new("latchd", "api", "web", 5),
    );
    assert!(rotated.verify(old_token.as_bytes(), NOW).is_ok());
    let claims = rotated.verify(old_token.as_bytes(), NOW).unwrap();
    let fresh = rotated.sign(&claims);
    let header: Json =
        serde_json::from_slice(&b64::decode(fresh.split('.').next().unwrap().as_bytes()).unwrap())
            .unwrap();
    assert_eq!(header["kid"], new.kid());
    assert!(rotated.verify(fresh.as_bytes(), NOW).is_ok());
    // The old ring does not know the new key.
    assert_eq!(
        fixture::verifier().verify(fresh.as_bytes(), NOW).err(),
        Some(TokenError::UnknownKid)
    );
}

#[test]
fn latchds_own_payloads_take_the_canonical_path_and_read_the_same() {
    let tokens = fixture::verifier();
    let claims = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 7,
        roles: ["admin", "ops:read"].into_iter().collect(),
        amr: Some(["pwd"].into_iter().collect()),
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let token = tokens.sign(&claims);
    let payload = b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap();
    let fast = Typed::parse_canonical(&payload, &tokens.policy).expect("canonical");
    assert_eq!(
        Ok(fast),
        RawClaims::parse(&payload).and_then(|raw| raw.typed(&tokens.policy))
    );
    // Anything else falls back: other order, whitespace, escapes, a number form, extra claims.
    let text = String::from_utf8(payload).unwrap();
    for other in [
        text.replacen("{\"iss\"", "{ \"iss\"", 1),
        text.replacen(",\"ver\":7", ",\"ver\":7.0", 1),
        text.replacen("admin", "adm\\u0069n", 1),
        text.replacen('}', ",\"x\":1}", 1),
        text.replacen("\"roles\"", "\"r\":1,\"roles\"", 1),
        text.replacen("\"amr\":[\"pwd\"]", "\"amr\":[\"p\\u0077d\"]", 1),
        text.replacen("\"amr\":[\"pwd\"],", "", 1)
            .replacen('}', ",\"amr\":[\"pwd\"]}", 1),
    ] {
        assert!(
            Typed::parse_canonical(other.as_bytes(), &tokens.policy).is_none(),
            "{other}"
        );
        assert!(canonical_agrees(&tokens, other.as_bytes()));
    }
    // And every rejection case of the rule tables still holds through either path: those
    // tokens come from the same fixture and run through `verify` above.
}

#[test]
fn rules_hold_for_tokens_in_latchds_own_layout() {
    // Signed by `sign`, so the payload is canonical and takes the fast path.
    let tokens = fixture::verifier();
    let valid = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 0,
        roles: Strings::default(),
        amr: None,
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let lw = fixture::LEEWAY;
    let cases = [
        (
            "expired",
            AccessClaims {
                exp: NOW.minus(lw),
                ..valid.clone()
            },
            TokenError::Expired,
        ),
        (
            "nbf",
            AccessClaims {
                nbf: NOW.plus(lw + 1),
                ..valid.clone()
            },
            TokenError::NotYetValid,
        ),
        (
            "iat",
            AccessClaims {
                iat: NOW.plus(lw + 1),
                ..valid.clone()
            },
            TokenError::IssuedInFuture,
        ),
    ];
    for (name, claims, want) in cases {
        assert_eq!(
            tokens.verify(tokens.sign(&claims).as_bytes(), NOW).err(),
            Some(want),
            "{name}"
        );
    }
    let same_key = |iss: &str, aud: &str| {
        AccessTokens::new(
            Keyring::new(&fixture::secret(), &[]),
            Policy::new(iss, aud, "web", 5),
        )
    };
    let other_issuer = same_key("evil", "api").sign(&valid);
    assert_eq!(
        tokens.verify(other_issuer.as_bytes(), NOW).err(),
        Some(TokenError::WrongIssuer)
    );
    let other_audience = same_key("latchd", "other").sign(&valid);
    assert_eq!(
        tokens.verify(other_audience.as_bytes(), NOW).err(),
        Some(TokenError::WrongAudience)
    );
    assert_eq!(
        tokens.verify(tokens.sign(&valid).as_bytes(), NOW),
        Ok(valid)
    );
}

#[test]
fn a_retired_key_verifies_only_until_its_window_ends() {
    let old = fixture::secret();
    let new = KeySecret::from_bytes(vec![0x44; 32]).unwrap();
    let token = with_claims(|c| {
        c.insert("exp".into(), json!(NOW.0 + 10_000));
    });
    let ring = Keyring::new(&new, &[]).with_retiring(&old, NOW.plus(60));
    let tokens = AccessTokens::new(ring, Policy::new("latchd", "api", "web", 5));
    assert!(
        tokens.verify(token.as_bytes(), NOW.plus(60)).is_ok(),
        "inside the window"
    );
    assert_eq!(
        tokens.verify(token.as_bytes(), NOW.plus(61)).err(),
        Some(TokenError::UnknownKid),
        "after it, although the token itself has not expired"
    );
    // A key that is live in the ring is not demoted by a retiring entry for it.
    let ring = Keyring::new(&new, std::slice::from_ref(&old)).with_retiring(&old, NOW);
    let tokens = AccessTokens::new(ring, Policy::new("latchd", "api", "web", 5));
    assert!(tokens.verify(token.as_bytes(), NOW.plus(1000)).is_ok());
}

#[test]
fn uuid_claims_take_only_the_lowercase_hyphenated_form() {
    let id = "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e10";
    let good = with_claims(|c| drop(c.insert("sub".into(), json!(id))));
    assert_eq!(
        verify(&good).unwrap().sub,
        Uuid::try_parse(id).unwrap(),
        "the same id a general parser reads"
    );
    for bad in [
        "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e1",   // 35 characters
        "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e100", // 37
        "6f1c1f4e3b9f-4c47-9d87-0c8a7b1f2e10-",  // hyphen moved
        "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e1g",  // not hex
        "6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2E10",  // upper case
        "6f1c1f4e-3b9f-4c47-9d87+0c8a7b1f2e10",  // not a hyphen
        "{6f1c1f4e-3b9f-4c47-9d87-0c8a7b1f2e1}", // braced
    ] {
        let token = with_claims(|c| drop(c.insert("sub".into(), json!(bad))));
        assert_eq!(
            verify(&token).err(),
            Some(TokenError::BadClaim("sub")),
            "{bad}"
        );
    }
}

#[test]
fn a_nul_inside_a_role_or_amr_string_is_a_bad_claim() {
    for (claim, list) in [
        ("roles", json!(["ad\u{0}min"])),
        ("amr", json!(["pwd", "\u{0}"])),
    ] {
        let token = with_claims(|c| drop(c.insert(claim.into(), list.clone())));
        assert_eq!(
            verify(&token).err(),
            Some(TokenError::BadClaim(claim)),
            "{list}"
        );
    }
}

#[test]
fn a_payload_longer_than_the_stack_buffer_verifies_and_reads_the_same() {
    let tokens = fixture::verifier();
    let roles: Vec<String> = (0..100).map(|i| format!("team-{i:03}:read")).collect();
    let claims = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 1,
        roles: roles.iter().collect(),
        amr: Some(["pwd", "otp"].into_iter().collect()),
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let token = tokens.sign(&claims);
    let payload = b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap();
    assert!(payload.len() > super::PAYLOAD_ON_STACK, "{}", payload.len());
    let got = tokens.verify(token.as_bytes(), NOW).unwrap();
    assert_eq!(got, claims);
    assert!(got.roles.iter().eq(roles.iter().map(String::as_str)));
}

#[test]
fn strings_read_back_as_given() {
    let empty = Strings::default();
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(empty.iter().count(), 0);
    assert_eq!(empty, Strings::from_iter(Vec::<String>::new()));

    let list: Strings = ["admin", "", "ops:read"].into_iter().collect();
    assert_eq!(list.len(), 3, "an empty string is an item");
    assert_eq!(list, ["admin", "", "ops:read"]);
    assert!(list.contains("ops:read") && list.contains("") && !list.contains("ops"));
    assert_eq!(format!("{list:?}"), r#"["admin", "", "ops:read"]"#);

    // A NUL cannot end an item early: it is replaced, so the count stays right.
    let odd: Strings = ["a\0b"].into_iter().collect();
    assert_eq!(odd, ["a\u{fffd}b"]);

    // A common list read from a token equals one built from strings.
    let pwd_otp: Strings = ["pwd", "otp"].into_iter().collect();
    assert_eq!(pwd_otp, Strings::from_json_items("\"pwd\",\"otp\""));
    assert_eq!(
        Strings::from_json_items("\"x\",\"y z\""),
        ["x", "y z"].into_iter().collect::<Strings>()
    );
    assert_eq!(Strings::from_json_items(""), empty);
}

#[test]
fn the_canonical_reader_agrees_on_every_uuid_and_integer_edge() {
    let tokens = fixture::verifier();
    let valid = AccessClaims {
        sub: Uuid::from_u128(0),
        sid: Uuid::from_u128(u128::MAX),
        jti: Uuid::new_v4(),
        ver: u64::try_from(i64::MAX).unwrap(),
        roles: ["admin"].into_iter().collect(),
        amr: None,
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let token = tokens.sign(&valid);
    let payload = b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap();
    assert!(Typed::parse_canonical(&payload, &tokens.policy).is_some());
    assert_eq!(tokens.verify(token.as_bytes(), NOW), Ok(valid));
    let text = String::from_utf8(payload).unwrap();
    let max = i64::MAX.to_string();
    for other in [
        text.replacen(&max, "9223372036854775808", 1), // one past i64::MAX
        text.replacen(&max, "-0", 1),
        text.replacen(&max, "01", 1),
        text.replacen("00000000-0000", "00000000+0000", 1),
        text.replacen("ffffffff-ffff", "FFFFFFFF-ffff", 1),
        text.replacen("ffffffff-ffff", "fffffffg-ffff", 1),
        text.replacen("\"admin\"", "\"ad\tmin\"", 1),
        text.replacen("[\"admin\"]", "[\"admin\",]", 1),
    ] {
        assert!(canonical_agrees(&tokens, other.as_bytes()), "{other}");
    }
}

#[test]
fn the_canonical_uuid_reader_agrees_with_the_general_one_on_every_byte_everywhere() {
    // Every byte value at every position of a valid id: hex digits of both cases, the
    // neighbours of each range ('/', ':', '`', 'g'), the hyphen, NUL and non-ASCII.
    let base = *b"0123abcd-ef45-6789-a0b1-c2d3e4f56789";
    assert_eq!(
        super::claims::canonical_uuid(&base),
        crate::model::parse_uuid(std::str::from_utf8(&base).unwrap())
    );
    for at in 0..base.len() {
        for byte in 0..=u8::MAX {
            let mut text = base;
            text[at] = byte;
            let general = std::str::from_utf8(&text)
                .ok()
                .and_then(crate::model::parse_uuid);
            assert_eq!(
                super::claims::canonical_uuid(&text),
                general,
                "{at}: {byte:#04x}"
            );
        }
    }
    for _ in 0..1000 {
        let id = Uuid::new_v4();
        let text: [u8; 36] = id.hyphenated().to_string().into_bytes().try_into().unwrap();
        assert_eq!(super::claims::canonical_uuid(&text), Some(id));
    }
}

#[test]
fn the_canonical_integer_reader_agrees_on_every_length_and_form() {
    let tokens = fixture::verifier();
    let valid = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 1,
        roles: ["admin"].into_iter().collect(),
        amr: None,
        iat: NOW,
        nbf: NOW,
        exp: UnixTime(424_242),
    };
    let token = tokens.sign(&valid);
    let text = String::from_utf8(b64::decode(token.split('.').nth(1).unwrap().as_bytes()).unwrap())
        .unwrap();
    let mut literals: Vec<String> = vec![
        "-".into(),
        "--1".into(),
        "+1".into(),
        "-01".into(),
        "00".into(),
        "1.".into(),
        "1.5".into(),
        "1e3".into(),
        "1E3".into(),
        "-1e3".into(),
        "1x".into(),
        i64::MIN.to_string(),
        "-9223372036854775809".into(),
    ];
    // Every length from 1 to 21 digits, both signs: the 18-digit fast path, the 19-digit
    // standard parser and the overflow beyond it.
    for len in 1..=21 {
        let nines = "9".repeat(len);
        let ones = format!("1{}", "0".repeat(len - 1));
        literals.extend([nines.clone(), format!("-{nines}"), ones]);
    }
    for literal in &literals {
        let payload = text.replacen(":424242,", &format!(":{literal},"), 1);
        assert!(canonical_agrees(&tokens, payload.as_bytes()), "{literal}");
        let general = RawClaims::parse(payload.as_bytes()).and_then(|r| r.typed(&tokens.policy));
        assert_eq!(
            Typed::parse_canonical(payload.as_bytes(), &tokens.policy).is_some(),
            general.is_ok(),
            "{literal}: the canonical reader declines only what the general one refuses"
        );
    }
}
