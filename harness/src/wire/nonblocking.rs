//! The async front end: [`AsyncConn`], a tokio client connection with a read
//! buffer that survives between responses, for the load generator's hot loop.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::decode::{Decoder, ReadOptions, Sink};
use super::error::WireError;
use super::response::{Collect, Response};

/// Bytes read from the socket at most at once.
const READ_SIZE: usize = 64 * 1024;

/// A keep-alive HTTP/1.x client connection over any async stream: requests
/// are written verbatim, responses decoded in place from one reused buffer.
#[derive(Debug)]
pub struct AsyncConn<S = TcpStream> {
    stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl AsyncConn<TcpStream> {
    /// Connects with TCP_NODELAY.
    pub async fn connect(addr: SocketAddr) -> io::Result<AsyncConn<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(AsyncConn::new(stream))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncConn<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> AsyncConn<S> {
        AsyncConn {
            stream,
            buf: vec![0; READ_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next response into `sink`, consuming exactly its bytes.
    pub async fn read_with(
        &mut self,
        opts: ReadOptions,
        sink: &mut impl Sink,
    ) -> Result<(), WireError> {
        let mut decoder = Decoder::new(opts);
        loop {
            if self.start == self.end {
                // the decoder keeps what it has not finished with: refill from the start
                self.start = 0;
                self.end = self.stream.read(&mut self.buf).await?;
                if self.end == 0 {
                    return decoder.finish();
                }
            }
            let used = decoder.feed(&self.buf[self.start..self.end], sink)?;
            self.start += used;
            if decoder.is_done() {
                return Ok(());
            }
        }
    }

    /// Reads the next response (1xx collected into [`Response::interim`]).
    pub async fn read_response(&mut self, head_request: bool) -> Result<Response, WireError> {
        let mut collect = Collect::default();
        let opts = ReadOptions {
            head_request,
            return_interim: false,
        };
        self.read_with(opts, &mut collect).await?;
        collect.into_response().ok_or(WireError::EofBeforeHead)
    }

    /// Bytes received but not yet consumed by a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}
