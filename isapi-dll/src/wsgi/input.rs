//! `wsgi.input`: the request body, read through `ReadClient` with the GIL released.

use std::ffi::CStr;
use std::io;
use std::sync::Arc;

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::ffi::pytype::{Arg, Args, Instance, Method, PyValue, Slots};

use super::link::Link;

const READ_CHUNK: usize = 64 * 1024;

/// A read that asks `ReadClient` for at least this many bytes of a body whose length is
/// known goes straight into the `bytes` object it returns, not through the buffer.
const DIRECT_READ: usize = 16 * 1024;

/// `wsgi.input`: the request body, read through `ReadClient` with the GIL released.
///
/// The server's preloaded bytes come first. A Content-Length body ends after exactly that
/// many bytes; a chunked one when `ReadClient` reports the end. A body that ends early or a
/// `ReadClient` failure raises `OSError` (and keeps raising): never a silently short body.
pub(crate) struct Input {
    link: Arc<Link>,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes still to fetch with ReadClient; `None` for a chunked body.
    remaining: Option<u64>,
    preloaded: bool,
    eof: bool,
    error: Option<(io::ErrorKind, String)>,
}

impl Input {
    pub(crate) fn new(link: Arc<Link>, total_bytes: u32) -> Self {
        Self {
            link,
            buf: Vec::new(),
            pos: 0,
            remaining: (total_bytes != u32::MAX).then_some(u64::from(total_bytes)),
            preloaded: false,
            eof: total_bytes == 0,
            error: None,
        }
    }

    /// Whether reading the body failed (a broken or truncated upload).
    pub(crate) fn broken(&self) -> bool {
        self.error.is_some()
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn raise(&self) -> PyErr {
        let (kind, message) = self
            .error
            .clone()
            .unwrap_or((io::ErrorKind::Other, String::new()));
        PyErr::from(io::Error::new(kind, message))
    }

    /// Buffers until at least `want` bytes are available or the body ends.
    fn fill(&mut self, py: Python<'_>, want: usize) -> PyResult<()> {
        if self.error.is_some() {
            return Err(self.raise());
        }
        if !self.preloaded {
            self.preloaded = true;
            let remaining = &mut self.remaining;
            let buf = &mut self.buf;
            let res = self.link.with(|ecb| {
                let pre = ecb.preload();
                let pre = match remaining {
                    Some(r) => &pre[..pre.len().min(usize::try_from(*r).unwrap_or(usize::MAX))],
                    None => pre,
                };
                buf.extend_from_slice(pre);
                if let Some(r) = remaining {
                    *r -= pre.len() as u64;
                }
                Ok(())
            });
            if let Err(e) = res {
                self.error = Some((e.kind(), e.to_string()));
                return Err(self.raise());
            }
            if self.remaining == Some(0) {
                self.eof = true;
            }
        }
        if self.available() >= want || self.eof {
            return Ok(());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let link = Arc::clone(&self.link);
        let buf = &mut self.buf;
        let remaining = &mut self.remaining;
        let outcome = py.detach(|| -> io::Result<bool> {
            while buf.len() < want {
                let mut ask = (want - buf.len()).max(READ_CHUNK);
                if let Some(r) = *remaining {
                    if r == 0 {
                        return Ok(true);
                    }
                    ask = ask.min(usize::try_from(r).unwrap_or(usize::MAX));
                }
                let start = buf.len();
                buf.resize(start + ask, 0);
                let n = link.with(|ecb| ecb.read_client(&mut buf[start..]));
                let n = match n {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                };
                buf.truncate(start + n);
                if n == 0 {
                    return match *remaining {
                        Some(r) => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the request body ended {r} bytes short of its Content-Length"),
                        )),
                        None => Ok(true),
                    };
                }
                if let Some(r) = remaining.as_mut() {
                    *r -= n as u64;
                    if *r == 0 {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        });
        match outcome {
            Ok(eof) => {
                self.eof = eof;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Records a broken body (sticky: every later read raises it too) and returns the error.
    fn fail(&mut self, e: io::Error) -> PyErr {
        tracing::warn!(target: "pyisapie", "reading the request body failed: {e}");
        self.error = Some((e.kind(), format!("reading the request body failed: {e}")));
        self.raise()
    }

    /// How many bytes a read of up to `want` (`None`: all) returns straight from
    /// `ReadClient` into its `bytes` object ([`Input::take_direct`]): when the body's length
    /// is known and at least [`DIRECT_READ`] of them are still to fetch. Called after the
    /// preload is buffered.
    fn direct_len(&self, want: Option<usize>) -> Option<usize> {
        let remaining = usize::try_from(self.remaining?).ok()?;
        let held = self.available();
        let len = want.map_or(held + remaining, |w| w.min(held + remaining));
        (self.error.is_none() && len.saturating_sub(held) >= DIRECT_READ).then_some(len)
    }

    /// Returns the next `len` bytes, no more than are buffered plus what the Content-Length
    /// leaves, as one `bytes` object: the buffered ones copied, the rest read into it by
    /// `ReadClient` with the GIL released. An upload so crosses memory once on its way to
    /// Python.
    fn take_direct<'py>(&mut self, py: Python<'py>, len: usize) -> PyResult<Bound<'py, PyBytes>> {
        let held = self.available().min(len);
        let link = Arc::clone(&self.link);
        let buffered = &self.buf[self.pos..self.pos + held];
        let remaining = self.remaining.unwrap_or(0);
        let mut broken = None;
        let out = PyBytes::new_with(py, len, |dst| {
            dst[..held].copy_from_slice(buffered);
            let rest = &mut dst[held..];
            let read = py.detach(|| -> io::Result<()> {
                let mut got = 0;
                while got < rest.len() {
                    match link.with(|ecb| ecb.read_client(&mut rest[got..]))? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "the request body ended {} bytes short of its Content-Length",
                                    remaining - got as u64
                                ),
                            ));
                        }
                        n => got += n,
                    }
                }
                Ok(())
            });
            broken = read.err();
            Ok(())
        })?;
        if let Some(e) = broken {
            return Err(self.fail(e));
        }
        self.pos += held;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= (len - held) as u64;
            self.eof = *r == 0;
        }
        Ok(out)
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.available());
        let out = PyBytes::new(py, &self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        out
    }

    fn read_all<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.fill(py, 0)?;
        if let Some(len) = self.direct_len(None) {
            return self.take_direct(py, len);
        }
        while !self.eof {
            let want = self.available() + READ_CHUNK;
            self.fill(py, want)?;
        }
        Ok(self.take(py, usize::MAX))
    }

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                return Ok(self.take(py, limit.map_or(end, |l| l.min(end))));
            }
            scanned = avail.len();
            if limit.is_some_and(|l| scanned >= l) || self.eof {
                return Ok(self.take(py, limit.unwrap_or(usize::MAX)));
            }
            let want = self.available() + 8192;
            let want = limit.map_or(want, |l| want.min(l));
            self.fill(py, want)?;
        }
    }
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

type PyResultAny<'py> = PyResult<Bound<'py, PyAny>>;

/// A size argument: `None`, absent or negative mean "all".
fn size_of_arg(arg: Option<Arg<'_, '_>>) -> PyResult<Option<usize>> {
    match arg {
        Some(a) if !a.is_none() => Ok(size_arg(Some(a.extract::<isize>()?))),
        _ => Ok(None),
    }
}

/// `read(size=-1)`: up to `size` bytes (fewer only at the end of the body), or all.
fn read<'py>(this: &Instance<'py, Input>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    let [size] = args.parse("read", ["size"], 0)?;
    let size = size_of_arg(size)?;
    let py = this.py();
    let mut input = this.try_borrow_mut()?;
    let out = match size {
        None => input.read_all(py)?,
        Some(n) => {
            input.fill(py, 0)?;
            if let Some(len) = input.direct_len(Some(n)) {
                input.take_direct(py, len)?
            } else {
                input.fill(py, n)?;
                input.take(py, n)
            }
        }
    };
    Ok(out.into_any())
}

/// `readline(size=-1)`: one line including its `\n`, at most `size` bytes.
fn readline<'py>(this: &Instance<'py, Input>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    let [size] = args.parse("readline", ["size"], 0)?;
    let size = size_of_arg(size)?;
    let line = this.try_borrow_mut()?.read_line(this.py(), size)?;
    Ok(line.into_any())
}

/// `readlines(hint=-1)`: lines until their total size reaches `hint` (or all).
fn readlines<'py>(this: &Instance<'py, Input>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    let [hint] = args.parse("readlines", ["hint"], 0)?;
    let hint = size_of_arg(hint)?.filter(|&h| h > 0);
    let py = this.py();
    let mut input = this.try_borrow_mut()?;
    let lines = PyList::empty(py);
    let mut total = 0;
    loop {
        let line = input.read_line(py, None)?;
        if line.as_bytes().is_empty() {
            break;
        }
        total += line.as_bytes().len();
        lines.append(line)?;
        if hint.is_some_and(|h| total >= h) {
            break;
        }
    }
    Ok(lines.into_any())
}

/// Iteration: one line at a time.
fn next<'py>(this: &Instance<'py, Input>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let line = this.try_borrow_mut()?.read_line(this.py(), None)?;
    Ok((!line.as_bytes().is_empty()).then(|| line.into_any()))
}

fn readable<'py>(this: &Instance<'py, Input>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    args.none("readable")?;
    true.into_bound_py_any(this.py())
}

/// Closing the input is a no-op: the server owns the connection.
fn close<'py>(this: &Instance<'py, Input>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    args.none("close")?;
    Ok(this.py().None().into_bound(this.py()))
}

impl PyValue for Input {
    const NAME: &'static CStr = c"pyisapie.Input";
    const DOC: &'static CStr = c"wsgi.input: the request body.";
    const METHODS: &'static [Method<Self>] = &[
        Method::new(c"read", c"read(size=-1)", read),
        Method::new(c"readline", c"readline(size=-1)", readline),
        Method::new(c"readlines", c"readlines(hint=-1)", readlines),
        Method::new(c"readable", c"", readable),
        Method::new(c"close", c"close(): a no-op", close),
        Method::END,
    ];
    const SLOTS: Slots<Self> = Slots::NONE.iterate(next);
}
