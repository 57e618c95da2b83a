//! The access log: one line per request, the host's own refusals included,
//! in NCSA common or combined format or IIS's W3C format, written raw (no
//! log prefix) to standard output or to files.
//!
//! - [`format`]: the lines, the W3C header, IIS's daily file names (pure);
//! - [`sink`]: where lines go: one writer thread per process that writes
//!   whole lines in batches, one `write` each, on an `O_APPEND` file (so the
//!   worker processes of a web garden share a file without tearing lines),
//!   and opens each day's file;
//! - [`pending`]: the request line of a head hyper refuses before the host
//!   sees a request, for its line in the log.
//!
//! Request threads format their line and hand it to the writer through a
//! bounded channel: no lock is shared per line, and no line is dropped (a
//! full channel makes the sender wait). [`flush`] at shutdown waits until
//! every line handed over is written.

mod format;
mod pending;
mod sink;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Uri, Version};
use time::{OffsetDateTime, UtcOffset};

pub(crate) use pending::PendingLine;

use crate::config::{AccessLogFormat, ServeConfig};
use crate::vars::Endpoints;

/// One line's facts.
pub(crate) struct Entry<'a> {
    /// The client's and the server's addresses.
    pub(crate) ends: &'a Endpoints,
    /// The request, as far as it was read.
    pub(crate) request: Request<'a>,
    /// The status sent.
    pub(crate) status: u16,
    /// Body bytes sent.
    pub(crate) sent: u64,
    /// `HSE_APPEND_LOG_PARAMETER` values and `lpszLogData`, logged in the
    /// query as IIS does.
    pub(crate) extra: [&'a str; 2],
    /// W3C's `sc-win32-status` (0: no Win32 error).
    pub(crate) win32: u32,
    /// From the request's head to its end.
    pub(crate) elapsed: Duration,
}

/// What is known of the request a line is about.
pub(crate) enum Request<'a> {
    /// A parsed head.
    Parsed(Parsed<'a>),
    /// The raw request line of a head the HTTP parser refused, or of one
    /// that never completed (empty when not even that was read).
    Line(&'a [u8]),
}

/// A parsed request head, as the log shows it.
pub(crate) struct Parsed<'a> {
    /// The method.
    pub(crate) method: &'a str,
    /// The request target as sent (`/path?query`).
    pub(crate) target: &'a str,
    /// W3C's `cs-uri-stem`: the decoded path.
    pub(crate) stem: &'a [u8],
    /// The query, without `?`.
    pub(crate) query: &'a str,
    /// The HTTP version.
    pub(crate) version: Version,
    /// The headers (`Referer`, `User-Agent`).
    pub(crate) headers: &'a HeaderMap,
}

impl<'a> Parsed<'a> {
    /// A head the host refused itself: its stem is the path as sent.
    pub(crate) fn refused(
        method: &'a Method,
        uri: &'a Uri,
        version: Version,
        headers: &'a HeaderMap,
    ) -> Self {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        Parsed {
            method: method.as_str(),
            target,
            stem: uri.path().as_bytes(),
            query: uri.query().unwrap_or(""),
            version,
            headers,
        }
    }
}

/// The process's access log, once opened.
struct Log {
    format: AccessLogFormat,
    sink: sink::Sender,
    /// Local time's offset (for NCSA), read while the process had one thread.
    offset: UtcOffset,
    /// Added to the clock: the tests' fake date (see [`TEST_CLOCK_ENV`]).
    shift: i64,
}

static LOG: OnceLock<Log> = OnceLock::new();
static LOCAL_OFFSET: OnceLock<UtcOffset> = OnceLock::new();

/// For the tests: the Unix time the access log's clock reads at start-up
/// (it runs on from there), to test daily files without waiting for
/// midnight. Not an option: nothing else reads this clock.
pub(crate) const TEST_CLOCK_ENV: &str = "ISAPI_HOST_TEST_ACCESS_LOG_CLOCK";

/// Reads local time's offset, for the NCSA formats. The C library's time
/// zone may be read safely only while the process has one thread, so this
/// runs first thing at start-up; UTC if it cannot be read. (A change of
/// offset, daylight saving time, applies from the next worker on: each
/// line's time is right either way, as it carries its offset.)
pub(crate) fn read_local_offset() {
    let offset = UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// Opens the access log of a process that serves requests, as the
/// settings say; with `announce`, a W3C log on standard output starts with
/// its header (the supervisor's, or a lone process's, once).
pub(crate) fn open(cfg: &ServeConfig) -> anyhow::Result<()> {
    if cfg.access_log == AccessLogFormat::Off {
        return Ok(());
    }
    let shift = match std::env::var(TEST_CLOCK_ENV)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(at) => at - real_now().unix_timestamp(),
        None => 0,
    };
    let offset = LOCAL_OFFSET.get().copied().unwrap_or(UtcOffset::UTC);
    let w3c = cfg.access_log == AccessLogFormat::W3c;
    let sink = sink::Sender::open(
        sink::Target::of(cfg.access_log_file.as_deref())?,
        w3c,
        move || clock(shift, UtcOffset::UTC),
    )?;
    let _ = LOG.set(Log {
        format: cfg.access_log,
        sink,
        offset,
        shift,
    });
    Ok(())
}

/// Checks the access log's destination before workers start (a bad path
/// fails at once, in the supervisor), and writes the W3C header when the
/// log goes to standard output: the supervisor (or a lone process) does it
/// once, rather than each worker.
pub(crate) fn announce(cfg: &ServeConfig) -> anyhow::Result<()> {
    if cfg.access_log == AccessLogFormat::Off {
        return Ok(());
    }
    let target = sink::Target::of(cfg.access_log_file.as_deref())?;
    let w3c = cfg.access_log == AccessLogFormat::W3c;
    let now = std::env::var(TEST_CLOCK_ENV)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok())
        .unwrap_or_else(real_now);
    // Daily files are named by UTC dates for W3C, local ones for NCSA.
    let offset = match w3c {
        true => UtcOffset::UTC,
        false => LOCAL_OFFSET.get().copied().unwrap_or(UtcOffset::UTC),
    };
    target.check(w3c, now.to_offset(offset))
}

/// Is an access log written?
pub(crate) fn enabled() -> bool {
    LOG.get().is_some()
}

/// Writes one line (nothing when the access log is off).
pub(crate) fn write(e: &Entry<'_>) {
    let Some(log) = LOG.get() else {
        return;
    };
    let (line, day) = match log.format {
        AccessLogFormat::Off => return,
        AccessLogFormat::W3c => {
            let now = clock(log.shift, UtcOffset::UTC);
            (format::w3c(e, now), now.date())
        }
        AccessLogFormat::Common | AccessLogFormat::Combined => {
            // NCSA's time is the request's arrival, in local time.
            let at = clock(log.shift, log.offset) - e.elapsed;
            let combined = log.format == AccessLogFormat::Combined;
            (format::ncsa(e, at, combined), at.date())
        }
    };
    log.sink.send(day, line);
}

/// Waits until every line written so far is out (at shutdown).
pub(crate) fn flush() {
    if let Some(log) = LOG.get() {
        log.sink.flush(Duration::from_secs(10));
    }
}

fn real_now() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

/// The log's clock, at an offset.
fn clock(shift: i64, offset: UtcOffset) -> OffsetDateTime {
    (real_now() + time::Duration::seconds(shift)).to_offset(offset)
}

/// Writes the line of a response the host made itself (a refusal, an
/// error page): its body is all in the response.
pub(crate) fn answered<B: http_body::Body>(
    ends: &Endpoints,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    resp: &http::Response<B>,
) {
    if !enabled() {
        return;
    }
    let sent = if method == Method::HEAD {
        0
    } else {
        resp.body().size_hint().exact().unwrap_or(0)
    };
    write(&Entry {
        ends,
        request: Request::Parsed(Parsed::refused(method, uri, version, headers)),
        status: resp.status().as_u16(),
        sent,
        extra: ["", ""],
        win32: 0,
        elapsed: Duration::ZERO,
    });
}

/// Writes the line of a head the HTTP parser refused (it answered
/// `status` with no body), or of one the header timeout cut off (408,
/// nothing sent): `line` is its request line, as far as it was read.
pub(crate) fn unparsed(ends: &Endpoints, line: &[u8], status: u16) {
    write(&Entry {
        ends,
        request: Request::Line(line),
        status,
        sent: 0,
        extra: ["", ""],
        win32: 0,
        elapsed: Duration::ZERO,
    });
}
