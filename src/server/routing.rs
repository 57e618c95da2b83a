//! Routing: the extensions mounted at URL prefixes, and what a connection
//! needs to run them.

use std::sync::Arc;

use crate::ffi::Extension;
use crate::pool::Pool;
use crate::shared::Shared;
use crate::site::files::StaticFiles;

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
    /// The static directories, longest prefix first.
    pub(super) statics: Vec<Arc<StaticFiles>>,
}

/// Where a request goes.
pub(super) enum Route<'a> {
    /// To an extension.
    Extension(&'a Mount),
    /// To a static directory.
    Static(&'a Arc<StaticFiles>),
}

impl App {
    /// What serves a (normalized) path: the longest prefix that is the path
    /// or a whole-segment start of it, of an extension or a static directory,
    /// as IIS's handler mappings pick the most specific; at the same prefix
    /// the extension wins (a handler claims a URL before the static files).
    pub(super) fn route(&self, path: &[u8]) -> Option<Route<'_>> {
        let ext = self
            .mounts
            .iter()
            .find(|m| url_prefix::strip(path, &*m.script_name).is_some());
        let files = self
            .statics
            .iter()
            .find(|f| url_prefix::strip(path, f.prefix()).is_some());
        match (ext, files) {
            (Some(m), Some(f)) if f.prefix().len() > m.script_name.len() => Some(Route::Static(f)),
            (Some(m), _) => Some(Route::Extension(m)),
            (None, Some(f)) => Some(Route::Static(f)),
            (None, None) => None,
        }
    }
}
