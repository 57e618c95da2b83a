//! Routing: the extensions mounted at URL prefixes, and what a connection
//! needs to run them.

use std::sync::Arc;

use crate::ffi::Extension;
use crate::pool::Pool;
use crate::shared::Shared;

/// An extension mounted at a URL prefix.
pub(super) struct Mount {
    /// The URL prefix in [`url_prefix`]'s form (`""` for the root, else `/name`), which is
    /// also the requests' `SCRIPT_NAME`.
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
        self.mounts
            .iter()
            .find(|m| url_prefix::strip(path, &*m.script_name).is_some())
    }
}
