//! The one integration-test binary: one module per area.

mod admin;
mod browser;
mod browser_signin;
mod cli;
mod cookie_logout;
mod fuzz_corpus;
mod grafana;
mod hardening;
mod http_errors;
mod http_flow;
mod http_lifecycle;
mod http_limits;
mod layering;
mod metrics;
mod openapi;
mod packaging;
mod proxy;
mod proxy_signin;
mod rate_limit;
mod signin;
mod storage;
mod store_crash;
mod support;
mod sweep;
mod totp;
mod totp_pages;
