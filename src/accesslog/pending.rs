//! The request line of the head a connection is reading, kept until the
//! request is handed over: a head the HTTP parser refuses (400, 414, 431)
//! never becomes a request, and one the header timeout cuts off (408) never
//! completes, yet both have their line in the access log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest request line kept (the rest is cut).
const MAX_LINE: usize = 8192;

/// One connection's head in progress, fed by its reads.
#[derive(Debug, Default)]
pub(crate) struct PendingLine {
    /// Requests handed over so far.
    taken: AtomicU64,
    line: Mutex<Line>,
}

#[derive(Debug, Default)]
struct Line {
    bytes: Vec<u8>,
    /// A head began while `taken` had this value (none yet: `None`).
    head: Option<u64>,
    /// The line's end was seen (or it was cut).
    done: bool,
}

impl PendingLine {
    /// Bytes the client sent; `between_requests`: no request is in flight,
    /// so they belong to a head. (Bytes sent during a request, a body or a
    /// pipelined head, are not looked at: no line is then known.)
    pub(crate) fn received(&self, bytes: &[u8], between_requests: bool) {
        if !between_requests {
            return;
        }
        let taken = self.taken.load(Ordering::Acquire);
        let mut l = self.line.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = bytes;
        if l.head != Some(taken) {
            // A new head: empty lines before its request line are allowed.
            let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n');
            let Some(start) = start else {
                return;
            };
            bytes = &bytes[start..];
            l.bytes.clear();
            l.head = Some(taken);
            l.done = false;
        }
        if l.done {
            return;
        }
        let (part, done) = match memchr::memchr(b'\n', bytes) {
            Some(i) => (&bytes[..i], true),
            None => (bytes, false),
        };
        let room = MAX_LINE.saturating_sub(l.bytes.len());
        l.bytes.extend_from_slice(&part[..part.len().min(room)]);
        l.done = done || l.bytes.len() >= MAX_LINE;
        if l.done && l.bytes.last() == Some(&b'\r') {
            l.bytes.pop();
        }
    }

    /// The parser handed a request over: its line is no longer pending.
    pub(crate) fn taken(&self) {
        self.taken.fetch_add(1, Ordering::AcqRel);
    }

    /// The line of a head that was begun and not handed over, and whether
    /// it was complete.
    pub(crate) fn unserved(&self) -> Option<(Vec<u8>, bool)> {
        let taken = self.taken.load(Ordering::Acquire);
        let l = self.line.lock().unwrap_or_else(|e| e.into_inner());
        (l.head == Some(taken)).then(|| (l.bytes.clone(), l.done))
    }
}

#[cfg(test)]
mod tests {
    use super::PendingLine;

    #[test]
    fn the_line_of_the_head_in_progress() {
        let p = PendingLine::default();
        assert_eq!(p.unserved(), None);
        p.received(b"\r\nGET /a HT", true);
        assert_eq!(p.unserved(), Some((b"GET /a HT".to_vec(), false)));
        p.received(b"TP/1.1\r\nHost: x\r\n\r\n", true);
        assert_eq!(p.unserved(), Some((b"GET /a HTTP/1.1".to_vec(), true)));
        p.taken();
        assert_eq!(p.unserved(), None, "handed over");
        p.received(b"body bytes\n", false);
        assert_eq!(p.unserved(), None);
        p.received(b"BAD\r\n\r\n", true);
        assert_eq!(p.unserved(), Some((b"BAD".to_vec(), true)));
    }
}
