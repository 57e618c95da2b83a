//! The request's own bookkeeping: `HSE_REQ_DONE_WITH_SESSION` and
//! `HSE_APPEND_LOG_PARAMETER`.

use windows_sys::Win32::System::Iis::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS};

use crate::request::RequestCtx;

/// `HSE_REQ_DONE_WITH_SESSION`: ends a request that returned
/// `HSE_STATUS_PENDING`, with the status the extension passed (an error,
/// or success).
pub(super) fn done_with_session(ctx: &RequestCtx, status: Option<u32>) -> Result<(), u32> {
    let status = match status {
        Some(HSE_STATUS_ERROR) => HSE_STATUS_ERROR,
        _ => HSE_STATUS_SUCCESS,
    };
    ctx.finish(status);
    Ok(())
}

/// `HSE_APPEND_LOG_PARAMETER`: text for the access log line, joined with
/// `&` to what was appended before.
pub(super) fn append_log_parameter(ctx: &RequestCtx, param: &[u8]) -> Result<(), u32> {
    let mut params = ctx.log_params();
    if !params.is_empty() {
        params.push('&');
    }
    params.push_str(&String::from_utf8_lossy(param));
    Ok(())
}
