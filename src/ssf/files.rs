//! Sending files and gathered buffers: `HSE_REQ_TRANSMIT_FILE` and
//! `HSE_REQ_VECTOR_SEND`.

use std::sync::Arc;

use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
use windows_sys::Win32::System::Iis::{
    HSE_IO_ASYNC, HSE_IO_DISCONNECT_AFTER_SEND, HSE_IO_SEND_HEADERS,
};

use super::async_io::{completion_for, run_io};
use crate::ffi::{FileRange, Piece, Transmit, VectorSend};
use crate::request::RequestCtx;

/// `HSE_REQ_TRANSMIT_FILE`: optional headers (`HSE_IO_SEND_HEADERS`, with
/// the status in `pszStatusCode` and the headers in `pHead`), then head,
/// file range and tail. IIS requires `HSE_IO_ASYNC`; the host also performs
/// it synchronously without that flag.
pub(super) fn transmit_file(ctx: &Arc<RequestCtx>, t: Transmit) -> Result<(), u32> {
    let completion = match (t.flags & HSE_IO_ASYNC != 0, t.completion) {
        (true, Some(c)) => Some(c),
        (true, None) => completion_for(ctx, t.flags)?,
        (false, _) => None,
    };
    if t.flags & HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    run_io(ctx, completion, move |ctx| {
        let mut sent = 0;
        if t.flags & HSE_IO_SEND_HEADERS != 0 {
            ctx.send_headers(t.status.as_deref(), t.head.bytes(), true)?;
        } else {
            ctx.write(t.head.bytes())?;
            sent += t.head.bytes().len() as u64;
        }
        sent += send_file(ctx, t.file)?;
        ctx.write(t.tail.bytes())?;
        Ok(sent + t.tail.bytes().len() as u64)
    })
}

/// `HSE_REQ_VECTOR_SEND`: optional headers, then memory and file elements
/// in order.
pub(super) fn vector_send(ctx: &Arc<RequestCtx>, v: VectorSend) -> Result<(), u32> {
    let VectorSend {
        flags,
        status,
        headers,
        pieces,
    } = v;
    let send_headers = flags & HSE_IO_SEND_HEADERS != 0;
    if send_headers != (status.is_some() && headers.is_some()) {
        // ms525729: pszStatus and pszHeaders are set exactly when SEND_HEADERS is.
        return Err(ERROR_INVALID_PARAMETER);
    }
    let completion = completion_for(ctx, flags)?;
    if flags & HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    run_io(ctx, completion, move |ctx| {
        if let (Some(status), Some(headers)) = (&status, &headers) {
            ctx.send_headers(Some(status), headers, true)?;
        }
        let mut sent = 0;
        for piece in &pieces {
            sent += match piece {
                Piece::Memory(m) => {
                    ctx.write(m.bytes())?;
                    m.bytes().len() as u64
                }
                Piece::File(f) if f.len == 0 => 0,
                Piece::File(f) => send_file(ctx, *f)?,
            };
        }
        Ok(sent)
    })
}

/// Streams a file range to the client; returns the bytes sent.
fn send_file(ctx: &RequestCtx, range: FileRange) -> Result<u64, u32> {
    let file = range.file().ok_or(ERROR_INVALID_PARAMETER)?;
    let end = if range.len == 0 {
        file.metadata().map_err(|_| ERROR_INVALID_PARAMETER)?.len()
    } else {
        range.offset.saturating_add(range.len)
    };
    let mut pos = range.offset;
    let mut buf = vec![0u8; 64 * 1024];
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_at(&file, &mut buf[..want], pos).map_err(|e| {
            tracing::warn!(request = ctx.id, error = %e, "reading a file for TRANSMIT_FILE/VECTOR_SEND failed");
            ERROR_INVALID_PARAMETER
        })?;
        if n == 0 {
            break; // the file is shorter than asked
        }
        ctx.write(&buf[..n])?;
        pos += n as u64;
    }
    Ok(pos - range.offset)
}

fn read_at(file: &std::fs::File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, pos)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, pos)
    }
}
