//! The connection: `HSE_REQ_IS_KEEP_CONN`, `HSE_REQ_IS_CONNECTED`,
//! `HSE_REQ_CLOSE_CONNECTION` and `HSE_REQ_ABORTIVE_CLOSE`.

use crate::ffi::BoolOut;
use crate::request::RequestCtx;

/// `HSE_REQ_IS_KEEP_CONN`: would the connection stay open if the response
/// is well framed? The client must allow it, and no one asked to close.
pub(super) fn is_keep_conn(ctx: &RequestCtx, out: BoolOut<'_>) -> Result<(), u32> {
    out.set(ctx.client_keep_alive && !ctx.conn.close_requested());
    Ok(())
}

/// `HSE_REQ_IS_CONNECTED`: is the client still there?
pub(super) fn is_connected(ctx: &RequestCtx, out: BoolOut<'_>) -> Result<(), u32> {
    out.set(!ctx.conn.is_gone());
    Ok(())
}

/// `HSE_REQ_CLOSE_CONNECTION`: the connection closes once the response is
/// done.
pub(super) fn close_connection(ctx: &RequestCtx) -> Result<(), u32> {
    ctx.conn.request_close();
    Ok(())
}

/// `HSE_REQ_ABORTIVE_CLOSE`: the connection is dropped at once.
pub(super) fn abortive_close(ctx: &RequestCtx) -> Result<(), u32> {
    ctx.abort();
    Ok(())
}
