//! The response body hyper streams to the client, and how an extension's
//! body ended ([`Outcome`]), which that body reads without a lock.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// The response body hyper streams to the client.
pub(crate) enum HostBody {
    /// A response the host made itself, or an extension's body written in
    /// one piece.
    Full(Option<Bytes>),
    /// The extension's body, fed through a bounded channel.
    Stream(StreamBody),
    /// A static file (`crate::site::files`), read by tower-http.
    File(tower_http::services::fs::ServeFileSystemResponseBody),
}

/// The receiving half of an extension's response body.
pub(crate) struct StreamBody {
    rx: mpsc::Receiver<Bytes>,
    outcome: Arc<Outcome>,
    flushed: bool,
}

impl StreamBody {
    /// The body fed by `rx`, which ends as `outcome` says.
    pub(super) fn new(rx: mpsc::Receiver<Bytes>, outcome: Arc<Outcome>) -> Self {
        StreamBody {
            rx,
            outcome,
            flushed: false,
        }
    }
}

/// How an extension's response body ended, readable without a lock.
#[derive(Default)]
pub(crate) struct Outcome {
    state: AtomicU8,
}

const OUTCOME_OPEN: u8 = 0;
const OUTCOME_COMPLETE: u8 = 1;
const OUTCOME_BROKEN: u8 = 2;
const OUTCOME_ABORTED: u8 = 3;

impl Outcome {
    /// The body ended short or broke: what was written goes out, then the
    /// connection closes.
    pub(super) fn break_off(&self) {
        self.state.store(OUTCOME_BROKEN, Ordering::Release);
    }

    /// An abortive close: what is queued is dropped.
    pub(super) fn abort(&self) {
        self.state.store(OUTCOME_ABORTED, Ordering::Release);
    }

    /// The extension is done: the body is complete if `complete` and
    /// nothing broke it before; otherwise it breaks (unless it was
    /// aborted). Returns whether it is complete.
    pub(super) fn end(&self, complete: bool) -> bool {
        if complete && self.state.load(Ordering::Acquire) == OUTCOME_OPEN {
            self.state.store(OUTCOME_COMPLETE, Ordering::Release);
            true
        } else {
            let _ = self.state.compare_exchange(
                OUTCOME_OPEN,
                OUTCOME_BROKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            false
        }
    }
}

/// A body that ended short, or an abortive close: hyper then closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("response body aborted")]
pub(crate) struct Aborted;

impl Body for HostBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.get_mut() {
            HostBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            HostBody::Stream(s) => {
                // An abortive close drops what is queued; a body that ended
                // short still delivers what was written before the close.
                if s.outcome.state.load(Ordering::Acquire) == OUTCOME_ABORTED {
                    return Poll::Ready(Some(Err(Aborted)));
                }
                match s.rx.poll_recv(cx) {
                    Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(None) => match s.outcome.state.load(Ordering::Acquire) {
                        OUTCOME_COMPLETE => Poll::Ready(None),
                        // hyper drops unflushed bytes when a body fails: give
                        // it one turn to flush what was written, then fail.
                        _ if !s.flushed => {
                            s.flushed = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        _ => Poll::Ready(Some(Err(Aborted))),
                    },
                    Poll::Pending => Poll::Pending,
                }
            }
            // A read error ends the body short: hyper closes the connection.
            HostBody::File(f) => Pin::new(f).poll_frame(cx).map_err(|_| Aborted),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            HostBody::File(f) => f.is_end_stream(),
            _ => matches!(self, HostBody::Full(None)),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            HostBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            HostBody::Full(None) => SizeHint::with_exact(0),
            HostBody::Stream(_) => SizeHint::default(),
            HostBody::File(f) => f.size_hint(),
        }
    }
}
