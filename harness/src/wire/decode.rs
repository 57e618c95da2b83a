//! [`Decoder`]: one response as a state machine fed with byte slices, with no
//! I/O, so that a blocking and an async front end share every rule. What it
//! decodes goes to a [`Sink`]: the collector that builds an owned response, or
//! a counter that keeps nothing (the load generator).

use super::error::{MAX_HEAD_BYTES, WireError};
use super::head::{self, Fields, Framing, Head};

/// How to read one response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// The request was `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// Deliver a 1xx interim response as the response (framing
    /// [`Framing::None`]) instead of passing it to [`Sink::interim`] and
    /// reading on to the final one. (101 is always final.)
    pub return_interim: bool,
}

/// Receives the parts of a response as the [`Decoder`] finds them.
pub trait Sink {
    /// A 1xx interim response that is skipped (see [`ReadOptions::return_interim`]).
    fn interim(&mut self, head: &Head<'_>) {
        let _ = head;
    }
    /// The head of the response, with the framing of its body.
    fn head(&mut self, head: &Head<'_>, framing: Framing);
    /// A chunk of this many bytes starts (chunked bodies; the last, empty chunk is not reported).
    fn chunk(&mut self, size: u64) {
        let _ = size;
    }
    /// Body bytes, chunk framing removed.
    fn data(&mut self, bytes: &[u8]);
    /// The trailer fields of a chunked body.
    fn trailers(&mut self, fields: Fields<'_>) {
        let _ = fields;
    }
}

/// Where the decoder is within the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a status line or header section (an interim response returns here).
    Head,
    /// In a Content-Length body, with this many bytes to go.
    Length(u64),
    /// In a chunk-size line.
    ChunkLine,
    /// In chunk data, with this many bytes to go.
    ChunkData(u64),
    /// In the CRLF after chunk data, with these bytes of it seen.
    ChunkEnd([u8; 2], usize),
    /// In the trailer section.
    Trailers,
    /// In a body that ends when the connection closes.
    Close,
    /// The response is complete.
    Done,
}

/// Decodes one HTTP/1.x response (and the 1xx responses before it) from the
/// byte slices it is fed, never consuming a byte past its end, so pipelined
/// responses can be read one after another from the same buffer.
///
/// Feed it with [`Decoder::feed`] until [`Decoder::is_done`]; when the
/// connection reaches its end first, call [`Decoder::finish`]. A line or head
/// cut across two slices is kept inside the decoder, so until the response is
/// done every slice is consumed whole.
#[derive(Debug)]
pub struct Decoder {
    opts: ReadOptions,
    state: State,
    /// The start of a head, chunk-size line or trailer section cut short.
    stash: Vec<u8>,
    /// Bytes left for the chunk-size lines and trailers of the body.
    budget: usize,
    /// The Content-Length, when there is one.
    expected: Option<u64>,
    /// Body bytes delivered.
    got: u64,
}

impl Decoder {
    /// A decoder for one response.
    pub fn new(opts: ReadOptions) -> Decoder {
        Decoder {
            opts,
            state: State::Head,
            stash: Vec::new(),
            budget: MAX_HEAD_BYTES,
            expected: None,
            got: 0,
        }
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, passing what it finds to `sink`, and returns how
    /// many bytes of `input` belong to this response. Until the response is
    /// done that is all of them.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl Sink) -> Result<usize, WireError> {
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            used += self.step(&input[used..], sink)?;
        }
        Ok(used)
    }

    /// The connection has no more bytes: completes a close-delimited body, or
    /// says what was cut short.
    pub fn finish(&mut self) -> Result<(), WireError> {
        match self.state {
            State::Done => Ok(()),
            State::Close => {
                self.state = State::Done;
                Ok(())
            }
            State::Head if self.stash.is_empty() => Err(WireError::EofBeforeHead),
            State::Head => Err(WireError::TruncatedHead(self.stash.len())),
            State::Length(_)
            | State::ChunkLine
            | State::ChunkData(_)
            | State::ChunkEnd(..)
            | State::Trailers => Err(WireError::TruncatedBody {
                expected: self.expected,
                got: self.got,
            }),
        }
    }

    /// Makes progress on a non-empty `input`; returns the bytes consumed.
    fn step(&mut self, input: &[u8], sink: &mut impl Sink) -> Result<usize, WireError> {
        match self.state {
            State::Head | State::ChunkLine | State::Trailers => self.step_block(input, sink),
            State::Length(left) | State::ChunkData(left) => {
                let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                sink.data(&input[..take]);
                self.got += take as u64;
                let left = left - take as u64;
                self.state = match (self.state, left) {
                    (State::Length(_), 0) => State::Done,
                    (State::Length(_), _) => State::Length(left),
                    (_, 0) => State::ChunkEnd([0; 2], 0),
                    _ => State::ChunkData(left),
                };
                Ok(take)
            }
            State::ChunkEnd(mut seen, mut n) => {
                let take = input.len().min(2 - n);
                seen[n..n + take].copy_from_slice(&input[..take]);
                n += take;
                self.state = if n < 2 {
                    State::ChunkEnd(seen, n)
                } else if &seen == b"\r\n" {
                    State::ChunkLine
                } else {
                    return Err(WireError::BadChunkTerminator(seen.to_vec()));
                };
                Ok(take)
            }
            State::Close => {
                sink.data(input);
                self.got += input.len() as u64;
                Ok(input.len())
            }
            State::Done => Ok(0),
        }
    }

    /// A head, chunk-size line or trailer section, which may come in pieces.
    fn step_block(&mut self, input: &[u8], sink: &mut impl Sink) -> Result<usize, WireError> {
        let prior = self.stash.len();
        let parsed = if prior == 0 {
            self.parse_block(input, sink)?
        } else {
            // enough to find the end of the block, or to exceed every limit
            let room = (MAX_HEAD_BYTES + 1).saturating_sub(prior);
            let mut stash = std::mem::take(&mut self.stash);
            stash.extend_from_slice(&input[..input.len().min(room)]);
            let parsed = self.parse_block(&stash, sink);
            self.stash = stash;
            parsed?
        };
        match parsed {
            Some(len) => {
                self.stash.clear();
                Ok(len - prior)
            }
            None => {
                if prior == 0 {
                    self.stash.extend_from_slice(input);
                }
                Ok(input.len())
            }
        }
    }

    /// Parses the block the state expects at the start of `buf`; returns its
    /// length and moves to the next state, or `None` if it is not complete.
    fn parse_block(
        &mut self,
        buf: &[u8],
        sink: &mut impl Sink,
    ) -> Result<Option<usize>, WireError> {
        match self.state {
            State::Head => {
                let opts = self.opts;
                let parsed = head::parse_head(buf, |h| -> Result<Option<Framing>, WireError> {
                    if (100..200).contains(&h.status) && h.status != 101 && !opts.return_interim {
                        sink.interim(h);
                        return Ok(None);
                    }
                    let framing = h.framing(opts.head_request)?;
                    sink.head(h, framing);
                    Ok(Some(framing))
                })?;
                let Some((len, framing)) = parsed else {
                    return Ok(None);
                };
                if let Some(framing) = framing? {
                    self.start_body(framing);
                }
                Ok(Some(len))
            }
            State::ChunkLine => {
                let Some((len, size)) = head::parse_chunk_line(buf, self.budget)? else {
                    return Ok(None);
                };
                self.budget -= len;
                if size == 0 {
                    self.state = State::Trailers;
                } else {
                    sink.chunk(size);
                    self.state = State::ChunkData(size);
                }
                Ok(Some(len))
            }
            State::Trailers => {
                let parsed =
                    head::parse_trailers(buf, self.budget, |fields| sink.trailers(fields))?;
                let Some((len, ())) = parsed else {
                    return Ok(None);
                };
                self.budget -= len;
                self.state = State::Done;
                Ok(Some(len))
            }
            _ => Ok(Some(0)),
        }
    }

    fn start_body(&mut self, framing: Framing) {
        self.state = match framing {
            Framing::None | Framing::ContentLength(0) => State::Done,
            Framing::ContentLength(n) => {
                self.expected = Some(n);
                State::Length(n)
            }
            Framing::Chunked => State::ChunkLine,
            Framing::CloseDelimited => State::Close,
        };
    }
}
