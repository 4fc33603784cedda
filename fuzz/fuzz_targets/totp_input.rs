#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| latchd::fuzzing::totp_input(data));
