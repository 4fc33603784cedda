//! Access-token sign and verify against the floor: base64url-decoding the signature plus
//! `ring::hmac::verify` over the same signing input, with no JSON at all.
//!
//! `cargo bench --bench token`; the README quotes the medians and the ratio verify/floor.

use std::hint::black_box;

use base64::engine::general_purpose::NO_PAD;
use base64::engine::Simd;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use ring::hmac;
use uuid::Uuid;

use latchd::time::UnixTime;
use latchd::token::{AccessClaims, AccessTokens, KeySecret, Keyring, Policy};

const NOW: UnixTime = UnixTime(1_800_000_000);

fn bench(c: &mut Criterion) {
    let secret = KeySecret::from_bytes(vec![0x42; 32]).expect("32-byte key");
    let tokens = AccessTokens::new(
        Keyring::new(&secret, &[]),
        Policy::new("latchd", "latchd", "latchd", 5),
    );
    // Contract-shaped: three UUIDs, client_id and one role.
    let claims = AccessClaims {
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        jti: Uuid::new_v4(),
        ver: 0,
        roles: ["admin"].into_iter().collect(),
        amr: Some(["pwd"].into_iter().collect()),
        iat: NOW,
        nbf: NOW,
        exp: NOW.plus(900),
    };
    let token = tokens.sign(&claims);
    eprintln!("token: {} bytes", token.len());
    assert!(tokens.verify(token.as_bytes(), NOW).is_ok());

    let mut group = c.benchmark_group("access_token");
    group.bench_function("sign", |b| b.iter(|| tokens.sign(black_box(&claims))));
    group.bench_function("verify", |b| {
        b.iter(|| tokens.verify(black_box(token.as_bytes()), NOW));
    });
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    // The same base64 engine latchd uses (SIMD where available), so the floor is not slowed
    // by a slower decoder than the one under test.
    let engine = Simd::url_safe(NO_PAD);
    group.bench_function("floor_b64_sig_plus_hmac_verify", |b| {
        b.iter(|| {
            let mut sig = [0u8; 32];
            let n = engine
                .decode_slice(black_box(signature), &mut sig)
                .expect("canonical");
            hmac::verify(&key, black_box(input.as_bytes()), &sig[..n])
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
