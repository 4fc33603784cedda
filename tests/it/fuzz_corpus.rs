//! Replays the committed fuzz corpora on stable, so every seed stays a regression test.

use std::fs;
use std::path::Path;

use latchd::fuzzing;
use latchd::token::totp::{self, TotpSecret};
use latchd::token::{recovery, AccessTokens, KeySecret, Keyring, Policy};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).expect("read seed"))
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn fuzz_seeds_replay_on_stable() {
    for (target, run) in fuzzing::TARGETS {
        let seeds = corpus(target);
        assert!(!seeds.is_empty(), "{target}: no seeds");
        for (name, seed) in seeds {
            let outcome = std::panic::catch_unwind(|| run(&seed));
            assert!(outcome.is_ok(), "{target}/{name} panicked");
        }
    }
}

#[test]
fn the_valid_seed_still_verifies_so_the_fuzzer_starts_past_the_mac() {
    let tokens = AccessTokens::new(
        Keyring::new(&KeySecret::from_bytes(fuzzing::KEY.to_vec()).unwrap(), &[]),
        Policy::new("latchd", "latchd", "latchd", 5),
    );
    let seeds = corpus("verify_token");
    let valid = &seeds.iter().find(|(name, _)| name == "valid").unwrap().1;
    assert!(tokens.verify(valid, fuzzing::NOW).is_ok());
    let reordered = &seeds
        .iter()
        .find(|(name, _)| name == "reordered_header")
        .unwrap()
        .1;
    assert!(tokens.verify(reordered, fuzzing::NOW).is_ok());
}

#[test]
fn the_totp_seeds_are_accepted_so_the_fuzzer_starts_past_every_check() {
    let secret = TotpSecret::from_bytes(fuzzing::TOTP_SECRET);
    let seeds = corpus("totp_input");
    let seed = |name: &str| {
        let bytes = &seeds.iter().find(|(n, _)| n == name).unwrap().1;
        String::from_utf8(bytes.clone()).unwrap()
    };
    let now = totp::step_at(fuzzing::NOW);
    assert_eq!(
        totp::verify(&secret, &seed("current_code"), fuzzing::NOW, None),
        Ok(now)
    );
    assert_eq!(
        totp::verify(
            &secret,
            &seed("next_code_with_whitespace"),
            fuzzing::NOW,
            None
        ),
        Ok(now + 1)
    );
    assert!(recovery::normalize(&seed("recovery_confusables")).is_some());
    assert!(TotpSecret::from_base32(&seed("base32_secret")).is_ok());
}
