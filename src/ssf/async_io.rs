//! Asynchronous I/O: the request's one slot for an outstanding operation,
//! and running an operation on the host's I/O threads, then the
//! extension's completion routine.
//!
//! Never inline in the call that started it: extensions commonly start the
//! next read from inside a completion.

use std::sync::Arc;

use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
use windows_sys::Win32::System::Iis::HSE_IO_ASYNC;

use crate::ffi::{Completion, Handler};
use crate::request::RequestCtx;

/// The completion routine an operation with these `HSE_IO_*` flags
/// completes with: none without `HSE_IO_ASYNC`; with it, the one
/// `HSE_REQ_IO_COMPLETION` set, which must be there.
#[inline]
pub(super) fn completion_for(ctx: &RequestCtx, flags: u32) -> Result<Option<Completion>, u32> {
    if flags & HSE_IO_ASYNC == 0 {
        return Ok(None);
    }
    match ctx.completion() {
        Some(c) => Ok(Some(c)),
        None => {
            tracing::warn!(
                request = ctx.id,
                "asynchronous I/O without HSE_REQ_IO_COMPLETION"
            );
            Err(ERROR_INVALID_PARAMETER)
        }
    }
}

/// Claims the request's one slot for asynchronous I/O: a second outstanding
/// operation could reorder the body or run two completions at once.
pub(super) fn claim_async(ctx: &RequestCtx) -> Result<(), u32> {
    if ctx.begin_async() {
        Ok(())
    } else {
        tracing::warn!(
            request = ctx.id,
            "asynchronous I/O while another is outstanding"
        );
        Err(ERROR_INVALID_PARAMETER)
    }
}

/// On an I/O thread: runs `op`, frees the async slot, then calls the
/// completion routine (never after `DONE_WITH_SESSION`, when the ECB is no
/// longer the extension's).
pub(super) fn complete_on_io_thread(
    ctx: &Arc<RequestCtx>,
    c: Completion,
    op: impl FnOnce(&RequestCtx) -> Result<u64, u32> + Send + 'static,
) {
    let ctx2 = ctx.clone();
    ctx.shared.io.spawn(move || {
        let (n, err) = match op(&ctx2) {
            Ok(n) => (n, 0),
            Err(e) => (0, e),
        };
        ctx2.end_async();
        if ctx2.is_finished() {
            tracing::warn!(
                request = ctx2.id,
                "I/O completed after DONE_WITH_SESSION; completion not called"
            );
            return;
        }
        let bytes = u32::try_from(n).unwrap_or(u32::MAX);
        ctx2.trace(format_args!("IoCompletion(cbIO={bytes}, dwError={err})"));
        ctx2.ecb.complete(c, bytes, err);
    });
}

/// Runs `op` now, or on an I/O thread followed by the completion routine.
pub(super) fn run_io(
    ctx: &Arc<RequestCtx>,
    completion: Option<Completion>,
    op: impl FnOnce(&RequestCtx) -> Result<u64, u32> + Send + 'static,
) -> Result<(), u32> {
    match completion {
        None => op(ctx).map(|_| ()),
        Some(c) => {
            claim_async(ctx)?;
            complete_on_io_thread(ctx, c, op);
            Ok(())
        }
    }
}
