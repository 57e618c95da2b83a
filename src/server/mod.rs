//! The HTTP side: start-up, the accept loop, each connection's task, the
//! timeouts, the request-head checks, routing to an extension, and
//! graceful shutdown.
//!
//! - [`startup`]: settings, extensions loaded and mounted, runtime and
//!   pools; `TerminateExtension` at the end;
//! - [`listener`]: the accept loop and graceful shutdown;
//! - [`connections`]: the open connections, for the sweeper and shutdown;
//! - [`balance`]: how a web garden's workers share out connections;
//! - [`sweeper`]: the keep-alive, I/O and request-head timeouts;
//! - [`connection`]: one connection's task (hyper over the socket);
//! - [`dispatch`]: admission, read-ahead, and the hand-off of a request to
//!   an extension thread;
//! - [`routing`]: the mounts;
//! - [`head`]: the request-head checks;
//! - `supervisor` (Unix): the process that owns the listening socket and
//!   runs the workers (docs/ARCHITECTURE.md, "Process model").

mod balance;
mod connection;
mod connections;
mod dispatch;
mod head;
mod listener;
mod routing;
mod startup;
#[cfg(unix)]
mod supervisor;
mod sweeper;

/// The head checks, for `crate::fuzzing`.
#[cfg(feature = "fuzzing")]
pub(crate) use head::check as check_head;
pub(crate) use startup::{AlreadyReported, run};
