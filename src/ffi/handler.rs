//! The one way up from the ABI: what the callbacks ask of a live request.
//! The request layer implements [`Handler`]; the `ffi` layer never names it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::decode::SupportRequest;

/// What the callbacks ask of a live request; the request layer implements
/// it. Errors are Win32 codes.
pub(crate) trait Handler: Send + Sync {
    /// The request's id (its `HCONN`), for logs.
    fn id(&self) -> usize;

    /// Whether every callback is logged (`--trace-callbacks`).
    fn traced(&self) -> bool;

    /// `GetServerVariable`: the value, or `None` for an unknown name.
    fn server_variable(&self, name: &[u8]) -> Option<Cow<'_, [u8]>>;

    /// `ReadClient`: blocks until some body bytes arrive; `Ok(0)` at the end.
    fn read_client(&self, buf: &mut [u8]) -> Result<usize, u32>;

    /// `WriteClient`, with its `HSE_IO_*` flags.
    fn write_client(self: Arc<Self>, data: &[u8], flags: u32) -> Result<(), u32>;

    /// `ServerSupportFunction`, decoded.
    fn support_function(self: Arc<Self>, request: SupportRequest<'_>) -> Result<(), u32>;

    /// Logs a callback under the `isapi::trace` target, when traced.
    fn trace(&self, what: fmt::Arguments<'_>) {
        if self.traced() {
            tracing::info!(target: "isapi::trace", request = self.id(), "{what}");
        }
    }
}
