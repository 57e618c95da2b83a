//! The link from the Python objects of one request to its ECB.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ffi::Ecb;

/// The way Python objects reach the request's ECB. Cleared when `HttpExtensionProc`
/// returns, so that an object the application kept (a stashed `wsgi.input`, a `write`)
/// gets an error instead of touching a finished request.
#[derive(Debug)]
pub(crate) struct Link {
    ecb: Mutex<Option<Ecb>>,
}

impl Link {
    pub(crate) fn new(ecb: Ecb) -> Arc<Self> {
        Arc::new(Self {
            ecb: Mutex::new(Some(ecb)),
        })
    }

    /// Runs `f` with the ECB if the request is still live. The lock is held during `f`, so
    /// `close` waits for a call in progress. Never blocks while holding the GIL for long:
    /// callers run blocking calls inside `py.detach`.
    pub(crate) fn with<R>(&self, f: impl FnOnce(Ecb) -> io::Result<R>) -> io::Result<R> {
        let guard = self.ecb.lock().unwrap_or_else(PoisonError::into_inner);
        match *guard {
            Some(ecb) => f(ecb),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the request has already finished",
            )),
        }
    }

    /// Detaches the ECB (end of the request).
    pub(crate) fn close(&self) {
        *self.ecb.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
