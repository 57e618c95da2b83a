//! Strict framing of chunked request bodies (RFC 9112 §7.1).
//!
//! hyper decodes chunked request bodies, and its framing (sizes, data,
//! CRLFs, where the trailer section ends) is exact, but it is lenient about
//! the text it skips: whitespace after the size, anything but LF between
//! `;` and the CR of a size line, and anything but a CRLF inside a trailer
//! line (which it hands to `httparse`, which also takes a bare LF as a line
//! end). A proxy that parses those bytes differently is a smuggling vector.
//!
//! [`Framing`] sees every byte the client sends, in order, before hyper does
//! (it sits in the connection's I/O). It finds the end of each request head
//! (the first empty line, as `httparse` does), is told the body's framing by
//! the connection's service when hyper hands it the request
//! ([`Framing::begin_request`]; hyper calls the service as soon as it parsed
//! the head, before it reads on), skips `Content-Length` bodies and checks
//! every chunk-size line and trailer line of chunked ones byte by byte.
//!
//! A violation marks the request's [`BodyCheck`] with the number of body
//! bytes before the bad line: the body reader fails the body there with the
//! same error as hyper's own framing errors (hyper must read the bad line
//! before it yields any byte after it, so the mark is always there in time).
//! The connection is then poisoned: it is asked to close, and a request
//! hyper would still parse after it never reaches an extension.

mod framing;
mod grammar;

pub(crate) use framing::{BodyCheck, BodyFraming, Framing};
pub(crate) use grammar::ChunkedBody;
