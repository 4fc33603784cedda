//! latchd: a single-binary auth server.
//!
//! One process and one embedded redb file register users, log them in, issue short-lived HS256
//! access tokens and rotating refresh tokens, revoke them, and let other services verify tokens.
//!
//! Calls go down the stack only: `http -> auth -> {token, store, password} -> time`.
#![warn(missing_docs, unreachable_pub, clippy::unwrap_used)]

pub mod auth;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod metrics;
pub mod password;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod token;

pub use http::serve;
