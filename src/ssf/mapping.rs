//! URL mapping: `HSE_REQ_MAP_URL_TO_PATH` and `HSE_REQ_MAP_URL_TO_PATH_EX`.

use windows_sys::Win32::Foundation::ERROR_INSUFFICIENT_BUFFER;
use windows_sys::Win32::System::Iis::{
    HSE_URL_FLAGS_EXECUTE, HSE_URL_FLAGS_READ, HSE_URL_FLAGS_SCRIPT, HSE_URL_MAPEX_INFO,
};

use crate::ffi::SizedOut;
use crate::request::RequestCtx;

/// The physical path for a URL below the document root.
fn map_url(ctx: &RequestCtx, url: &[u8]) -> String {
    crate::vars::translate(&ctx.shared.cfg.doc_root, url)
}

/// `HSE_REQ_MAP_URL_TO_PATH`: the path, written over the URL in the
/// caller's buffer (size-probed).
pub(super) fn map_url_to_path(ctx: &RequestCtx, url: &[u8], out: SizedOut<'_>) -> Result<(), u32> {
    out.write(map_url(ctx, url).as_bytes(), 1)
}

/// `HSE_REQ_MAP_URL_TO_PATH_EX`: the path, its access flags and how much of
/// the path and the URL matched the application root.
pub(super) fn map_url_to_path_ex(
    ctx: &RequestCtx,
    url: &[u8],
    info: &mut HSE_URL_MAPEX_INFO,
    size: Option<&mut u32>,
) -> Result<(), u32> {
    let path = map_url(ctx, url);
    if path.len() >= info.lpszPath.len() {
        return Err(ERROR_INSUFFICIENT_BUFFER);
    }
    let root = ctx.shared.cfg.doc_root.display().to_string();
    let prefix = ctx.info.script_name.as_bytes();
    let matching_url = if url.starts_with(prefix) {
        prefix.len()
    } else {
        0
    };
    info.lpszPath.fill(0);
    for (d, s) in info.lpszPath.iter_mut().zip(path.bytes()) {
        *d = s as _;
    }
    info.dwFlags = HSE_URL_FLAGS_READ | HSE_URL_FLAGS_EXECUTE | HSE_URL_FLAGS_SCRIPT;
    info.cchMatchingPath = root.len().min(path.len()) as u32;
    info.cchMatchingURL = matching_url as u32;
    info.dwReserved1 = 0;
    info.dwReserved2 = 0;
    if let Some(size) = size {
        *size = path.len() as u32 + 1;
    }
    Ok(())
}
