//! The request body on its way from the connection to the extension.
//!
//! Up to `--read-ahead` bytes are read on the runtime before the extension
//! runs ([`BodyReader::preload`]). The rest flows when the extension first
//! asks for it (so that `Expect: 100-continue` is answered then): a task on
//! the runtime (the pump) reads hyper's frames into a window of
//! [`WINDOW`] bytes, and `ReadClient` takes from the window, blocking only
//! when it is empty. Reading ahead while the extension works on the previous
//! bytes keeps a large upload from crossing between the extension thread and
//! the runtime once per frame; the window bounds the memory an upload holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::Notify;

use windows_sys::Win32::Foundation::{ERROR_INVALID_DATA, ERROR_NETNAME_DELETED};

use crate::chunk::BodyCheck;

/// Body bytes the pump reads ahead of the extension, at most (plus one
/// frame of hyper's).
pub(crate) const WINDOW: usize = 256 * 1024;

/// Why reading the request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Malformed framing (a bad chunk): 400.
    Malformed,
    /// Over `--max-body`: 413.
    TooLarge,
    /// The client disconnected before the end of the body.
    Disconnected,
}

impl BodyError {
    /// The Win32 error `ReadClient` reports.
    pub(crate) fn win32(self) -> u32 {
        match self {
            BodyError::Malformed | BodyError::TooLarge => ERROR_INVALID_DATA,
            BodyError::Disconnected => ERROR_NETNAME_DELETED,
        }
    }

    /// The status the host answers with when the extension sent nothing.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            BodyError::Malformed | BodyError::Disconnected => StatusCode::BAD_REQUEST,
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// A body that stops because the socket did is a disconnect; anything
    /// else hyper reports is malformed framing.
    fn classify(err: &hyper::Error) -> Self {
        use std::io::ErrorKind;
        if err.is_incomplete_message() || err.is_canceled() || err.is_closed() || err.is_timeout() {
            return BodyError::Disconnected;
        }
        let mut source = std::error::Error::source(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut => BodyError::Disconnected,
                    _ => BodyError::Malformed,
                };
            }
            source = e.source();
        }
        BodyError::Malformed
    }
}

/// hyper's body with the host's `--max-body` limit and strict chunk framing.
#[derive(Default)]
struct Source {
    incoming: Option<Incoming>,
    received: u64,
    max: u64,
    /// The connection's verdict on a chunked body's lines hyper skips
    /// (`crate::chunk`): a frame or end after an invalid one is an error.
    check: Option<Arc<BodyCheck>>,
}

impl Source {
    /// Is the body broken before the frame (or end) that follows the
    /// bytes received so far?
    fn broken(&mut self) -> bool {
        if self
            .check
            .as_ref()
            .is_some_and(|c| c.broken_at(self.received))
        {
            self.incoming = None;
            tracing::warn!("request body failed: invalid chunk-size or trailer line");
            return true;
        }
        false
    }

    /// The next data frame, skipping trailers; `None` at the end.
    async fn next_frame(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            let Some(body) = self.incoming.as_mut() else {
                return Ok(None);
            };
            match body.frame().await {
                None => {
                    if self.broken() {
                        return Err(BodyError::Malformed);
                    }
                    self.incoming = None;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.incoming = None;
                    tracing::warn!(error = %e, "request body failed");
                    return Err(BodyError::classify(&e));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if self.broken() {
                        return Err(BodyError::Malformed);
                    }
                    self.received += data.len() as u64;
                    if self.received > self.max {
                        self.incoming = None;
                        tracing::warn!(limit = self.max, "request body over the limit");
                        return Err(BodyError::TooLarge);
                    }
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The request body still to be read after the preload.
pub(crate) struct BodyReader {
    source: Source,
    /// The rest of the frame the preload cut.
    pending: Bytes,
    error: Option<BodyError>,
    /// The pump's window, once the extension has read past the preload.
    pipe: Option<Arc<Pipe>>,
}

impl BodyReader {
    /// A reader of `incoming` (`None`: the request has no body), which may
    /// deliver at most `max` bytes; `check` is the connection's verdict on
    /// its chunk lines (chunked bodies).
    pub(crate) fn new(incoming: Option<Incoming>, max: u64, check: Option<Arc<BodyCheck>>) -> Self {
        BodyReader {
            source: Source {
                incoming,
                received: 0,
                max,
                check,
            },
            pending: Bytes::new(),
            error: None,
            pipe: None,
        }
    }

    /// Reads up to `read_ahead` bytes for the ECB. A body that ends or
    /// breaks inside the preload is settled here, before the extension runs.
    pub(crate) async fn preload(
        &mut self,
        read_ahead: usize,
        stall: std::time::Duration,
    ) -> Vec<u8> {
        let mut pre = Vec::new();
        while pre.len() < read_ahead && self.source.incoming.is_some() {
            // No extension thread waits yet, so a stalled upload is cut here.
            let frame = match tokio::time::timeout(stall, self.source.next_frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    tracing::warn!(timeout = ?stall, "client stalled during the request-body read-ahead");
                    self.source.incoming = None;
                    Err(BodyError::Disconnected)
                }
            };
            match frame {
                Ok(Some(mut data)) => {
                    let take = (read_ahead - pre.len()).min(data.len());
                    pre.extend_from_slice(&data.split_to(take));
                    self.pending = data;
                }
                Ok(None) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        pre
    }

    /// The error that ended the body, if it broke.
    pub(crate) fn failed(&self) -> Option<BodyError> {
        self.error
    }

    /// Blocking read for `ReadClient`: fewer bytes than asked is fine, 0 is
    /// the end. The first call past the preload starts the pump on `rt`.
    pub(crate) fn read(
        &mut self,
        rt: &tokio::runtime::Handle,
        buf: &mut [u8],
    ) -> Result<usize, BodyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending.split_to(n));
            return Ok(n);
        }
        let pipe = match &self.pipe {
            Some(pipe) => pipe,
            None => {
                if self.source.incoming.is_none() {
                    return Ok(0);
                }
                // The pump owns the body from here; what is left is empty.
                let source = std::mem::take(&mut self.source);
                let pipe = Arc::new(Pipe::default());
                rt.spawn(pump(source, pipe.clone()));
                self.pipe.insert(pipe)
            }
        };
        pipe.read(buf).inspect_err(|&e| self.error = Some(e))
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        // The request is over: the pump stops and lets go of hyper's body.
        if let Some(pipe) = &self.pipe {
            pipe.lock().closed = true;
            pipe.space.notify_one();
            pipe.gone.notify_one();
        }
    }
}

/// The window between the pump and `ReadClient`.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// Wakes the pump when the window has room again (or the request ended).
    space: Notify,
    /// Wakes the pump when the request ended: it lets go of hyper's body.
    gone: Notify,
}

#[derive(Default)]
struct PipeState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// How the body ended, once it has.
    end: Option<Result<(), BodyError>>,
    /// The extension thread blocked in `ReadClient`.
    reader: Option<Thread>,
    /// The request is over.
    closed: bool,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes as many buffered bytes as fit, blocking while there are none.
    fn read(&self, buf: &mut [u8]) -> Result<usize, BodyError> {
        let mut st = self.lock();
        loop {
            if !st.chunks.is_empty() {
                let was_full = st.buffered >= WINDOW;
                let mut n = 0;
                while n < buf.len() {
                    let Some(front) = st.chunks.front_mut() else {
                        break;
                    };
                    let k = (buf.len() - n).min(front.len());
                    buf[n..n + k].copy_from_slice(&front[..k]);
                    front.advance(k);
                    if front.is_empty() {
                        st.chunks.pop_front();
                    }
                    n += k;
                }
                st.buffered -= n;
                let room = was_full && st.buffered < WINDOW;
                drop(st);
                if room {
                    self.space.notify_one();
                }
                return Ok(n);
            }
            match st.end {
                Some(Ok(())) => return Ok(0),
                Some(Err(e)) => return Err(e),
                None => {}
            }
            st.reader = Some(thread::current());
            drop(st);
            thread::park();
            st = self.lock();
        }
    }
}

/// Moves the body from hyper into the window until it ends, breaks, or the
/// request is over.
async fn pump(mut source: Source, pipe: Arc<Pipe>) {
    loop {
        loop {
            let room = pipe.space.notified();
            {
                let st = pipe.lock();
                if st.closed {
                    return;
                }
                if st.buffered < WINDOW {
                    break;
                }
            }
            room.await;
        }
        // A connection the host drops (a stall, an abortive close) ends the
        // body with hyper's "incomplete" error, never as a clean end.
        let item = tokio::select! {
            item = source.next_frame() => item,
            () = pipe.gone.notified() => return,
        };
        let mut st = pipe.lock();
        let done = match item {
            Ok(Some(data)) => {
                st.buffered += data.len();
                st.chunks.push_back(data);
                false
            }
            Ok(None) => {
                st.end = Some(Ok(()));
                true
            }
            Err(e) => {
                st.end = Some(Err(e));
                true
            }
        };
        let reader = st.reader.take();
        drop(st);
        if let Some(t) = reader {
            t.unpark();
        }
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn push(pipe: &Pipe, data: &'static [u8]) {
        let mut st = pipe.lock();
        st.buffered += data.len();
        st.chunks.push_back(Bytes::from_static(data));
        if let Some(t) = st.reader.take() {
            t.unpark();
        }
    }

    #[test]
    fn a_read_takes_across_chunks_then_blocks_until_more_or_the_end() {
        let pipe = Arc::new(Pipe::default());
        push(&pipe, b"abc");
        push(&pipe, b"defg");
        let mut buf = [0u8; 5];
        assert_eq!(pipe.read(&mut buf), Ok(5));
        assert_eq!(&buf, b"abcde");
        assert_eq!(pipe.read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"fg");
        assert_eq!(pipe.lock().buffered, 0);
        let writer = {
            let pipe = pipe.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                push(&pipe, b"xyz");
                thread::sleep(Duration::from_millis(50));
                let mut st = pipe.lock();
                st.end = Some(Err(BodyError::Disconnected));
                if let Some(t) = st.reader.take() {
                    t.unpark();
                }
            })
        };
        assert_eq!(pipe.read(&mut buf), Ok(3), "blocks until bytes arrive");
        assert_eq!(&buf[..3], b"xyz");
        assert_eq!(
            pipe.read(&mut buf),
            Err(BodyError::Disconnected),
            "a broken body fails the read, never a clean end"
        );
        writer.join().unwrap();
    }

    #[test]
    fn reading_below_the_window_gives_the_pump_room() {
        let pipe = Pipe::default();
        pipe.lock().buffered = WINDOW;
        pipe.lock().chunks.push_back(Bytes::from(vec![7u8; WINDOW]));
        let mut buf = vec![0u8; 1024];
        assert_eq!(pipe.read(&mut buf), Ok(1024));
        // The permit is stored for the pump's next wait.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let woken = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), pipe.space.notified())
                .await
                .is_ok()
        });
        assert!(woken, "the pump is told the window has room");
    }
}
