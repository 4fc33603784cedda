//! latchd: a single-binary auth server.
//!
//! One process and one embedded redb file register users, log them in, issue short-lived HS256
//! access tokens and rotating refresh tokens, revoke them, and let other services verify tokens.
//!
//! Calls go down the stack only:
//!
//! ```text
//! main, cli, http  ->  auth (the one door: every use case; owns the Storage port and events)
//!                  ->  token, password, auth::storage::Storage  ->  model, time
//! store (redb) implements auth::storage::Storage;  metrics subscribes to auth's events
//! ```
//!
//! `config` turns the environment and flags into one settings value per layer; only `main`
//! and `cli` read it. ARCHITECTURE.md is the map.
#![warn(missing_docs, unreachable_pub, clippy::unwrap_used)]

pub mod auth;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod conformance;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod model;
pub mod password;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod token;
