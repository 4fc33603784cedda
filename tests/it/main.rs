//! The one integration-test binary: one module per area.

mod fuzz_corpus;
mod store_crash;
