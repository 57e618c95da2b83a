//! Loaded ISAPI extensions.

use std::path::{Path, PathBuf};

use crate::ffi::{ExtensionLib, LoadError};
use crate::request::RequestCtx;

/// An extension library, loaded once, with `GetExtensionVersion` done.
pub(crate) struct Extension {
    pub(crate) path: PathBuf,
    lib: ExtensionLib,
}

impl Extension {
    /// Loads the library and calls `GetExtensionVersion`.
    pub(crate) fn load(path: &Path) -> Result<Self, LoadError> {
        let (lib, description) = ExtensionLib::load(path)?;
        tracing::info!(path = %path.display(), description = %description, "loaded ISAPI extension");
        Ok(Extension {
            path: path.to_path_buf(),
            lib,
        })
    }

    /// Runs `HttpExtensionProc` for a request; returns its `HSE_STATUS_*`.
    pub(crate) fn call(&self, ctx: &RequestCtx) -> u32 {
        crate::ffi::call_extension(&self.lib, ctx)
    }

    /// Calls `TerminateExtension(HSE_TERM_MUST_UNLOAD)`, if exported.
    pub(crate) fn terminate(&self) {
        match self.lib.terminate() {
            Some(ok) => {
                tracing::info!(path = %self.path.display(), ok, "TerminateExtension called")
            }
            None => {
                tracing::debug!(path = %self.path.display(), "extension has no TerminateExtension")
            }
        }
    }
}
