//! End-to-end tests of `isapi-host` with the C fixture extensions in
//! `fixtures/isapi-c/`: every test starts the real host on port 0 and talks to
//! it over real sockets (see `tests/support/mod.rs`).

mod support;

mod host_async;
mod host_balance;
mod host_basic;
mod host_body;
mod host_cli;
mod host_config;
mod host_conn;
mod host_control;
mod host_lifecycle;
mod host_limits;
mod host_logs;
mod host_misbehave;
mod host_reload;
mod host_response;
mod host_robustness;
mod host_ssf;
mod host_static;
mod host_vars;
mod host_webconfig;
mod host_workers;
