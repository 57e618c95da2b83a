//! `isapi-host`: runs ISAPI extensions the way IIS does, without IIS.
//!
//! The binary (`src/main.rs`) only calls [`run`]; everything else is here,
//! private to the crate. The one public door besides [`run`] is the hidden
//! `fuzzing` module (cargo feature `fuzzing`, used by `fuzz/` only), which
//! hands the parsers and decoders raw bytes.
//!
//! The crate is laid out in layers; a module uses only its own children and
//! the modules below it. From the top:
//! - [`server`]: start-up, the accept loop, connections, timeouts, head
//!   checks, routing, and the hand-off of a request to an extension thread;
//! - [`ssf`]: what the ISAPI callbacks do to a request: every `HSE_REQ_*`
//!   handler, and the [`ffi::Handler`] implementation;
//! - [`request`]: one request's context: its ECB, body reader, response
//!   writer, and end;
//! - [`body`]: the request body, read ahead of the extension in a bounded
//!   window; [`chunk`]: the strict chunk-size and trailer line grammar,
//!   checked on the raw bytes below hyper; [`accesslog`]: the access log;
//!   [`logging`]: the host's own log (text or JSON);
//! - [`conn`]: a connection's signals; [`shared`]: server-wide state;
//! - [`response`]: parsing of the heads extensions send; [`vars`]: IIS
//!   server variables; [`config`]: the command line and the TOML file;
//!   [`control`]: `isapi-host ctl` and the supervisor's control protocol;
//!   [`pool`]: the extension threads;
//! - [`ffi`]: the ABI (loading, the ECB, the four callbacks, decoding
//!   `ServerSupportFunction`) and, in `ffi::os` (Unix), the supervisor's and
//!   workers' process plumbing (inherited descriptors, signals, the shared
//!   in-flight table): all the `unsafe` code, calling up only through
//!   [`ffi::Handler`].
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod accesslog;
mod body;
mod chunk;
mod config;
mod conn;
mod control;
mod ffi;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod logging;
#[cfg(unix)]
use ffi::os;
mod pool;
mod request;
mod response;
mod server;
mod shared;
mod site;
mod ssf;
mod vars;

use std::process::ExitCode;

/// mimalloc: requests allocate on a runtime thread and free on an extension
/// thread; glibc's per-thread arenas pay for that with a lock and
/// consolidation on every cross-thread free. Not under the `fuzzing`
/// feature: the fuzz targets keep the system allocator, which the address
/// sanitizer instruments.
#[cfg(all(not(windows), not(feature = "fuzzing")))]
#[global_allocator]
static ALLOC: ffi::MiMalloc = ffi::MiMalloc;
// Built all the same, so that the fuzzing build checks it too.
#[cfg(all(not(windows), feature = "fuzzing"))]
const _: ffi::MiMalloc = ffi::MiMalloc;

/// The `isapi-host` command line: parses the arguments, runs `serve` or
/// `ctl`, and turns the outcome into the process's exit code.
pub fn run() -> ExitCode {
    #[cfg(target_os = "linux")]
    ffi::no_huge_pages();
    let cli = config::parse_cli();
    // While the process has one thread (the C library's time zone).
    accesslog::read_local_offset();
    let _flush_on_exit = logging::init();
    let result = match cli.command {
        config::Command::Serve(args) => server::run(*args).map(|()| 0),
        config::Command::Ctl(args) => control::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // An app that did not start: pyisapie said why, once.
        Err(e) if e.is::<server::AlreadyReported>() => ExitCode::FAILURE,
        Err(e) => {
            // Once, on stderr, where the logs go too.
            eprintln!("isapi-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}
