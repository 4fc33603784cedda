#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| latchd::fuzzing::request_parts(data));
