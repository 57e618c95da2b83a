//! Routing: the extensions mounted at URL prefixes, and what a connection
//! needs to run them.

use std::sync::Arc;

use crate::ffi::Extension;
use crate::pool::Pool;
use crate::shared::Shared;

/// An extension mounted at a URL prefix.
pub(super) struct Mount {
    /// The URL prefix, `/` or `/name`.
    pub(super) prefix: String,
    /// `SCRIPT_NAME`: the prefix, or `""` for the root.
    pub(super) script_name: Arc<str>,
    /// The extension.
    pub(super) ext: Arc<Extension>,
}

/// Everything a connection task needs.
pub(super) struct App {
    /// The server-wide state requests reach.
    pub(super) shared: Arc<Shared>,
    /// Threads that run `HttpExtensionProc`.
    pub(super) workers: Pool,
    /// The mounts, longest prefix first.
    pub(super) mounts: Vec<Mount>,
}

impl App {
    /// The mount that serves a (normalized) path: the longest prefix that
    /// is the path or a whole-segment start of it.
    pub(super) fn route(&self, path: &[u8]) -> Option<&Mount> {
        self.mounts.iter().find(|m| {
            let p = m.prefix.as_bytes();
            p == b"/" || (path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/'))
        })
    }
}
