//! Access-token sign and verify against the floor: base64url-decoding the signature plus
//! `ring::hmac::verify` over the same signing input, with no JSON at all.
//!
//! `cargo bench --bench token`; the README quotes the medians and the ratio verify/floor.
//!
//! Criterion times each function in its own five-second window, so on a shared machine a load
//! swing between the verify window and the floor window moves the ratio (the same build gave
//! anywhere from 1.25x to 1.94x within half an hour). After criterion, the bench therefore
//! also times verify and the floor in alternating batches of 100 calls and prints both
//! medians and the median of the per-round ratios, which such swings hit on both sides alike.

use std::hint::black_box;
use std::time::Instant;

use base64::engine::general_purpose::NO_PAD;
use base64::engine::Simd;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use ring::hmac;
use uuid::Uuid;

use latchd::time::UnixTime;
use latchd::token::{AccessClaims, AccessTokens, KeySecret, Keyring, Policy};

const NOW: UnixTime = UnixTime(1_800_000_000);

/// Rounds of the interleaved measurement; each times 100 verifies and 100 floors.
const INTERLEAVED_ROUNDS: usize = 10_000;
const BATCH: u32 = 100;

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
    let floor = || {
        let mut sig = [0u8; 32];
        let n = engine
            .decode_slice(black_box(signature), &mut sig)
            .expect("canonical");
        hmac::verify(&key, black_box(input.as_bytes()), &sig[..n])
    };
    group.bench_function("floor_b64_sig_plus_hmac_verify", |b| b.iter(floor));
    group.finish();

    // Only under `cargo bench` (not when `cargo test` runs the bench once as a test).
    if std::env::args().any(|arg| arg == "--bench") {
        let verify = || drop(black_box(tokens.verify(black_box(token.as_bytes()), NOW)));
        let floor = || {
            let _ = black_box(floor());
        };
        interleaved(&verify, &floor);
    }
}

/// Times `verify` and `floor` in alternating batches and prints the medians (ns per call)
/// and the median of the rounds' verify/floor ratios.
fn interleaved(verify: &dyn Fn(), floor: &dyn Fn()) {
    let per_call = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    let (mut verifies, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..INTERLEAVED_ROUNDS {
        // Alternate which goes first, so neither always runs on the other's warm caches.
        let (v, f) = if round % 2 == 0 {
            let v = per_call(verify);
            (v, per_call(floor))
        } else {
            let f = per_call(floor);
            (per_call(verify), f)
        };
        verifies.push(v);
        floors.push(f);
        ratios.push(v / f);
    }
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    println!(
        "access_token/interleaved: verify {:.1} ns, floor {:.1} ns, verify/floor {:.3} \
         (medians of {INTERLEAVED_ROUNDS} alternating rounds of {BATCH} calls)",
        median(&mut verifies),
        median(&mut floors),
        median(&mut ratios),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
