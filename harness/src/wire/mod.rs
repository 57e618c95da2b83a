//! The harness's one HTTP/1.x *response* reader: strict, built on `httparse`,
//! with no I/O in its rules, and two front ends. `conform`, `bench` and the
//! end-to-end tests all read responses with it.
//!
//! It reads exactly one response and never consumes bytes beyond the end of
//! that response, so pipelined responses can be read one after another from
//! the same buffer.
//!
//! - [`head`]: status line, headers, trailers and chunk-size lines, parsed in
//!   place (`httparse`, `httparse::parse_chunk_size`), and the framing decision.
//! - [`decode`]: the [`Decoder`] state machine, fed with byte slices, passing
//!   what it finds to a [`Sink`].
//! - [`response`]: the owned [`Response`] and the [`Collect`] sink that builds it.
//! - [`blocking`]: [`read_response`] from any [`std::io::BufRead`], and [`Conn`],
//!   a `TcpStream` client that keeps leftover bytes between responses and
//!   tells what the server does with the connection afterwards ([`PeerState`]).
//! - [`nonblocking`]: [`AsyncConn`], the same over tokio, for the load generator.
//!
//! Message framing follows RFC 9112 §6.3: no body for responses to HEAD and
//! for 1xx/204/304; `Transfer-Encoding` with `chunked` last → chunked (with
//! chunk extensions and trailers, RFC 9112 §7.1); otherwise `Content-Length`
//! (identical duplicates tolerated, RFC 9110 §8.6); otherwise the body is
//! delimited by the server closing the connection.
//!
//! Malformed server output is reported as a typed [`WireError`]; the reader is
//! deliberately strict (CRLF line endings, no obs-fold, no whitespace before
//! the colon) because it is used to judge servers.
//!
//! ```
//! use isapi_harness::wire::{read_response, Framing};
//! let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n";
//! let mut r = &raw[..];
//! let first = read_response(&mut r, false).unwrap();
//! assert_eq!(first.body, b"hi");
//! assert_eq!(first.framing, Framing::ContentLength(2));
//! let second = read_response(&mut r, false).unwrap();
//! assert_eq!(second.status, 204);
//! ```

pub mod blocking;
pub mod decode;
pub mod error;
pub mod head;
pub mod nonblocking;
pub mod response;
#[cfg(test)]
mod tests;

pub use blocking::{
    Conn, PeerState, is_peer_gone, read_response, read_response_with, read_with, wait_closed,
};
pub use decode::{Decoder, ReadOptions, Sink};
pub use error::{MAX_HEAD_BYTES, WireError};
pub use head::{Fields, Framing, Head};
pub use nonblocking::AsyncConn;
pub use response::{Collect, Interim, Response};
