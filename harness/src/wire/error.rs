//! [`WireError`]: what can go wrong reading one response, and the size limit
//! it enforces.

use std::io;

/// Upper bound on the size of a response head (status line and headers), and
/// on the chunk-size lines and trailers of one chunked body, to keep a
/// misbehaving server from exhausting memory.
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// Malformed or incomplete server output, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection was closed before any byte of a response arrived.
    #[error("connection closed before a response started")]
    EofBeforeHead,
    /// The connection was closed in the middle of the status line or headers
    /// (after this many bytes of the head).
    #[error("connection closed inside the response head after {0} bytes")]
    TruncatedHead(usize),
    /// The status line is not `HTTP/1.x SP 3DIGIT [SP reason]`, or the code is below 100.
    #[error("bad status line: {0:?}")]
    BadStatusLine(String),
    /// A header (or trailer) line is not `token ":" value`: whitespace before the
    /// colon, obs-fold, an empty name or a control character in the value.
    #[error("bad header line: {0:?}")]
    BadHeader(String),
    /// A line in the head ended with a bare LF instead of CRLF.
    #[error("bare LF line ending in response head: {0:?}")]
    BareLf(String),
    /// The head (or the chunk-size lines and trailers of one body) exceeds
    /// [`MAX_HEAD_BYTES`].
    #[error("response head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// Content-Length is not a decimal number, or duplicate values differ.
    #[error("invalid Content-Length: {0:?}")]
    InvalidContentLength(String),
    /// A chunk-size line is not `hex-digits [ws] [; extensions]` ended by CRLF.
    #[error("bad chunk size line: {0:?}")]
    BadChunkSize(String),
    /// Chunk data was not followed by CRLF.
    #[error("chunk data not followed by CRLF (got {0:?})")]
    BadChunkTerminator(Vec<u8>),
    /// The connection closed before the announced body was complete.
    #[error("body truncated: got {got} bytes, expected {expected:?}")]
    TruncatedBody {
        /// The Content-Length, or None for a chunked body.
        expected: Option<u64>,
        /// Body bytes received (chunk framing removed).
        got: u64,
    },
    /// Reading from (or writing to) the connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl WireError {
    /// True when the error is a read timeout (the server stalled).
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// `b` as text, for error messages.
pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
