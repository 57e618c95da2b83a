//! Body I/O: asynchronous `WriteClient`, `HSE_REQ_ASYNC_READ_CLIENT`,
//! `HSE_REQ_IO_COMPLETION` and `HSE_REQ_SET_FLUSH_FLAG`.

use std::sync::Arc;

use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
use windows_sys::Win32::System::Iis::{HSE_IO_ASYNC, HSE_IO_DISCONNECT_AFTER_SEND};

use super::async_io::{claim_async, complete_on_io_thread, completion_for, run_io};
use crate::ffi::{Completion, Handler, RawBuf};
use crate::request::RequestCtx;

/// `WriteClient`, synchronous or with `HSE_IO_ASYNC`.
pub(super) fn write_client(ctx: &Arc<RequestCtx>, data: &[u8], flags: u32) -> Result<(), u32> {
    let completion = completion_for(ctx, flags)?;
    if completion.is_some() {
        claim_async(ctx)?;
    }
    // The bytes are queued before returning, so the caller may reuse its
    // buffer at once; only the completion is deferred.
    if let Err(e) = ctx.write(data) {
        if completion.is_some() {
            ctx.end_async();
        }
        return Err(e);
    }
    if flags & HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    if let Some(c) = completion {
        let n = data.len() as u64;
        complete_on_io_thread(ctx, c, move |_| Ok(n));
    }
    Ok(())
}

/// `HSE_REQ_ASYNC_READ_CLIENT`: reads on an I/O thread, then calls the
/// completion with the byte count (0 at the end of the body).
pub(super) fn async_read_client(
    ctx: &Arc<RequestCtx>,
    mut buf: RawBuf,
    flags: u32,
) -> Result<(), u32> {
    if flags & HSE_IO_ASYNC == 0 {
        return Err(ERROR_INVALID_PARAMETER);
    }
    let completion = completion_for(ctx, HSE_IO_ASYNC)?;
    run_io(ctx, completion, move |ctx| {
        ctx.read_body(buf.as_mut()).map(|n| n as u64)
    })
}

/// `HSE_REQ_IO_COMPLETION`: sets (or, with NULL, clears) the completion
/// routine of the request's asynchronous operations.
pub(super) fn io_completion(ctx: &RequestCtx, completion: Option<Completion>) -> Result<(), u32> {
    ctx.set_completion(completion);
    Ok(())
}

/// `HSE_REQ_SET_FLUSH_FLAG`: the host never buffers a response, so every
/// write is already flushed; the call is only traced.
pub(super) fn set_flush_flag(ctx: &RequestCtx, on: bool) -> Result<(), u32> {
    ctx.trace(format_args!("SET_FLUSH_FLAG({on})"));
    Ok(())
}
