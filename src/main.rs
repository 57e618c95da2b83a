//! `isapi-host`: runs ISAPI extensions the way IIS does, without IIS.
//!
//! The crate is laid out by concern:
//! - [`config`]: the command line and the TOML file;
//! - [`server`]: the hyper server, connections, routing and shutdown;
//! - [`request`]: one request's response, framing and end;
//! - [`body`]: the request body, read ahead of the extension in a bounded window;
//! - [`vars`]: IIS server variables;
//! - [`response`]: parsing of the heads extensions send;
//! - [`ssf`]: the `HSE_REQ_*` support functions;
//! - [`ffi`]: the ABI: loading, the ECB and the four callbacks (all `unsafe`).
#![deny(unsafe_code)]

mod accesslog;
mod body;
mod config;
mod conn;
mod ffi;
mod pool;
mod request;
mod response;
mod server;
mod shared;
mod ssf;
mod vars;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: requests allocate on a runtime thread and free on an extension
/// thread; glibc's per-thread arenas pay for that with a lock and
/// consolidation on every cross-thread free.
#[cfg(not(windows))]
#[global_allocator]
static ALLOC: ffi::MiMalloc = ffi::MiMalloc;

fn main() -> ExitCode {
    let cli = config::Cli::parse();
    // Log lines are written by a dedicated thread, so that request threads
    // never wait on stderr; nothing is dropped when it falls behind.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config::Command::Serve(args) = cli.command;
    match server::run(*args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr, where the logs go too.
            eprintln!("isapi-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}
