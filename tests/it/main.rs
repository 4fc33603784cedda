//! The one integration-test binary: one module per area.

mod admin;
mod audit;
mod backup;
mod browser;
mod browser_signin;
mod cli;
mod cookie_logout;
mod cors;
mod footprint;
mod fuzz_corpus;
mod grafana;
mod hardening;
mod http_errors;
mod http_flow;
mod http_lifecycle;
mod http_limits;
mod introspect;
mod layering;
mod metrics;
#[cfg(feature = "postgres")]
mod nodes;
#[cfg(feature = "postgres")]
mod nodes_cli;
#[cfg(feature = "postgres")]
mod nodes_nginx;
mod openapi;
mod operator;
mod packaging;
#[cfg(feature = "postgres")]
mod postgres_cluster;
mod proxy;
mod proxy_signin;
mod rate_limit;
mod roles;
mod sessions;
mod signin;
mod storage;
#[cfg(feature = "postgres")]
mod storage_pg;
mod store_crash;
mod support;
mod sweep;
mod totp;
mod totp_pages;
