//! What a benchmark measures and reports: the workloads ([`App`]) and the
//! results of load runs, idle connections and uploads, gathered in a
//! [`Report`] (also the JSON output).

use std::collections::BTreeMap;

use bytes::Bytes;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::cases::pattern;
use crate::servers::ServerSpec;

/// The benchmark workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum App {
    /// GET /hello: 13 bytes.
    Hello,
    /// POST /echo with a 10 KiB body, echoed.
    #[value(name = "echo-10k")]
    Echo10k,
    /// GET /stream: 10 × 1 KiB from a generator, no Content-Length.
    Stream,
    /// POST /count with a 1 MiB body.
    #[value(name = "upload-1m")]
    Upload1m,
    /// GET /bytes?n=0.
    #[value(name = "body-0")]
    Body0,
    /// GET /bytes?n=10240.
    #[value(name = "body-10k")]
    Body10k,
    /// GET /bytes?n=1048576.
    #[value(name = "body-1m")]
    Body1m,
    /// GET /work: about 0.1 ms of Python computation per request (WSGI servers only).
    Work,
    /// GET /static/10k.bin: a 10 KiB file from disk, through the host's `--static` and
    /// the bare server's `--static-dir` (both tower-http's `ServeDir`).
    #[value(name = "static-10k")]
    Static10k,
    /// GET the URL of a `url:` server (`bench --url`); any 2xx answer counts. Not
    /// chosen with --app: it is the only workload of a `url:` server.
    #[value(skip)]
    Url,
}

/// One request of a load run, as a server is sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The request target (path and query).
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// The body (a `Content-Length` body for POST).
    pub body: Bytes,
}

impl Request {
    /// The request as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut r = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.path, self.host
        )
        .into_bytes();
        if self.method == "POST" {
            r.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(&self.body);
        r
    }
}

/// The body `bench_app`'s `/work` route computes (the sum of i*i below 2000).
const WORK_BODY: &[u8] = b"work=2664667000\n";

impl App {
    /// The workload's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            App::Hello => "hello",
            App::Echo10k => "echo-10k",
            App::Stream => "stream",
            App::Upload1m => "upload-1m",
            App::Body0 => "body-0",
            App::Body10k => "body-10k",
            App::Body1m => "body-1m",
            App::Work => "work",
            App::Static10k => "static-10k",
            App::Url => "url",
        }
    }

    /// The request this workload sends to `spec`.
    pub fn request(self, spec: &ServerSpec) -> Request {
        let (method, path) = self.method_path();
        match (self, spec.url()) {
            (App::Url, Some(url)) => Request {
                method,
                path: url.path,
                host: url.authority,
                body: Bytes::new(),
            },
            _ => Request {
                method,
                path: path.to_owned(),
                host: "bench".to_owned(),
                body: self.request_body(),
            },
        }
    }

    pub(super) fn method_path(self) -> (&'static str, &'static str) {
        match self {
            App::Hello => ("GET", "/hello"),
            App::Echo10k => ("POST", "/echo"),
            App::Stream => ("GET", "/stream"),
            App::Upload1m => ("POST", "/count"),
            App::Body0 => ("GET", "/bytes?n=0"),
            App::Body10k => ("GET", "/bytes?n=10240"),
            App::Body1m => ("GET", "/bytes?n=1048576"),
            App::Work => ("GET", "/work"),
            App::Static10k => ("GET", "/static/10k.bin"),
            App::Url => ("GET", "/"),
        }
    }

    fn request_body(self) -> Bytes {
        match self {
            App::Echo10k => pattern(10240).into(),
            App::Upload1m => pattern(1 << 20).into(),
            _ => Bytes::new(),
        }
    }

    /// Whether a response status is the expected one: 200, or any 2xx for a URL.
    pub(super) fn valid_status(self, status: u16) -> bool {
        match self {
            App::Url => (200..300).contains(&status),
            _ => status == 200,
        }
    }

    /// Whether a response body is the right one (length, or the count line; any for a URL).
    pub(super) fn valid_body(self, len: usize, first: &[u8]) -> bool {
        match self {
            App::Url => true,
            App::Hello => len == 13,
            App::Echo10k | App::Stream | App::Body10k | App::Static10k => len == 10240,
            App::Upload1m => first.starts_with(b"bytes=1048576"),
            App::Body0 => len == 0,
            App::Body1m => len == 1 << 20,
            App::Work => first.starts_with(WORK_BODY),
        }
    }

    /// Whether a server can run this workload (host-c has only hello, echo and count;
    /// `work` is Python, so only the WSGI servers run it).
    pub fn supported_by(self, spec: &ServerSpec) -> bool {
        if spec.url().is_some() || self == App::Url {
            return spec.url().is_some() && self == App::Url;
        }
        match spec.kind() {
            "host-c" => matches!(
                self,
                App::Hello | App::Echo10k | App::Upload1m | App::Static10k
            ),
            "bare-hyper" => self != App::Work,
            // Only the host and the bare server serve files.
            "host-py" => true,
            _ => self != App::Static10k,
        }
    }
}

/// Error counters of one run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Errors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Exchanges that failed on the wire (I/O error, malformed or cut-short response).
    pub io: u64,
    /// Responses with a status other than 200.
    pub status: u64,
    /// 200 responses with the wrong body.
    pub body: u64,
}

impl Errors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.status + self.body
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The server's label.
    pub server: String,
    /// The workload.
    pub app: App,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Measured seconds (after the warm-up).
    pub seconds: f64,
    /// Valid responses to requests sent in the measured time.
    pub requests: u64,
    /// `requests / seconds`.
    pub rps: f64,
    /// Error counters (over the warm-up too).
    pub errors: Errors,
    /// Connections re-opened after the server closed them (e.g. after a close-delimited response).
    pub reconnects: u64,
    /// Mean latency in µs.
    pub mean_us: f64,
    /// Median latency in µs.
    pub p50_us: u64,
    /// 90th percentile latency in µs.
    pub p90_us: u64,
    /// 99th percentile latency in µs.
    pub p99_us: u64,
    /// 99.9th percentile latency in µs.
    pub p999_us: u64,
    /// Highest latency in µs.
    pub max_us: u64,
    /// Server CPU seconds (user+system, whole process tree) per 1000 requests.
    pub server_cpu_ms_per_1k: f64,
    /// Resident memory of the server's process tree after the run, in KiB.
    pub server_rss_kib: u64,
    /// rps of each interleaved round (index = round); this run is the median-rps one.
    pub round_rps: Vec<f64>,
    /// p99 latency of each interleaved round (index = round).
    pub round_p99_us: Vec<u64>,
    /// `--wrk` comparison: median wrk rps over the wrk comparison rounds (wrk and this
    /// generator alternate, after the interleaved rounds).
    pub wrk_rps: Option<f64>,
    /// `--wrk` comparison: median wrk p99 over the wrk comparison rounds.
    pub wrk_p99_us: Option<u64>,
    /// `--wrk` comparison: this generator's rps in each wrk comparison round (the first is
    /// `rps`, the median interleaved round; the others are extra runs); empty without `--wrk`.
    pub rounds_rps: Vec<f64>,
    /// `--wrk` comparison: wrk's rps in each wrk comparison round; empty without `--wrk`.
    pub wrk_rounds_rps: Vec<f64>,
}

/// Resident memory of a server holding idle keep-alive connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    /// The server's label.
    pub server: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that were opened and served one request.
    pub established: usize,
    /// Of those, still open when the memory was measured.
    pub still_open: usize,
    /// The server's resident memory before, in KiB.
    pub rss_before_kib: u64,
    /// The server's resident memory with the connections open, in KiB.
    pub rss_after_kib: u64,
}

/// A large chunked upload to `/count`, with the server's memory sampled meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadResult {
    /// The server's label.
    pub server: String,
    /// Body bytes sent.
    pub bytes: u64,
    /// Seconds from the first byte sent to the response.
    pub seconds: f64,
    /// Throughput in MiB/s.
    pub mib_per_s: f64,
    /// The server answered 200 with the right count.
    pub ok: bool,
    /// The response's status and body (or the error).
    pub response: String,
    /// The server's resident memory before, in KiB.
    pub rss_before_kib: u64,
    /// The highest resident memory sampled (every 20 ms), in KiB.
    pub rss_peak_kib: u64,
    /// `rss_peak_kib - rss_before_kib`.
    pub rss_growth_kib: u64,
}

/// How, where and when a benchmark ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// When (UTC).
    pub date: String,
    /// CPU, cores, memory and kernel.
    pub machine: String,
    /// The repository's commit.
    pub git_rev: String,
    /// The request threads of every server (`--threads`).
    pub threads: usize,
    /// Every server ran at its own defaults (`--defaults`): `threads` was not given to them.
    #[serde(default)]
    pub defaults: bool,
    /// The load generator's threads (`--client-threads`).
    pub client_threads: usize,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Warm-up seconds before each run.
    pub warmup_s: f64,
    /// Interleaved rounds (`--rounds`); every reported run is the median round.
    pub rounds: usize,
    /// Each server's label and how it was launched.
    pub servers: BTreeMap<String, String>,
    /// The command line.
    pub command: String,
}

/// Everything a benchmark measured (written as `bench.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// How, where and when.
    pub meta: Meta,
    /// The load runs (the median round of each).
    pub runs: Vec<RunResult>,
    /// Idle keep-alive memory (`--idle-conns`).
    pub idle: Vec<IdleResult>,
    /// Chunked uploads (`--upload-mib`).
    pub uploads: Vec<UploadResult>,
    /// Problems during the run (a server that did not start or died, a wrk failure).
    pub errors: Vec<String>,
}

/// A run of `server` with only the fields the round logic reads set.
#[cfg(test)]
pub(super) fn run_of(server: &str, rps: f64, p99_us: u64) -> RunResult {
    RunResult {
        server: server.into(),
        app: App::Hello,
        concurrency: 64,
        seconds: 1.0,
        requests: rps as u64,
        rps,
        errors: Errors::default(),
        reconnects: 0,
        mean_us: 0.0,
        p50_us: 0,
        p90_us: 0,
        p99_us,
        p999_us: 0,
        max_us: 0,
        server_cpu_ms_per_1k: 0.0,
        server_rss_kib: 0,
        round_rps: Vec::new(),
        round_p99_us: Vec::new(),
        wrk_rps: None,
        wrk_p99_us: None,
        rounds_rps: Vec::new(),
        wrk_rounds_rps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_validation() {
        assert!(App::Hello.valid_body(13, b"Hello, world!"));
        assert!(!App::Hello.valid_body(12, b"Hello, world"));
        assert!(App::Upload1m.valid_body(14, b"bytes=1048576\n"));
        assert!(App::Upload1m.valid_body(40, b"bytes=1048576 fnv=0123456789abcdef"));
        assert!(!App::Upload1m.valid_body(14, b"bytes=1048575\n"));
        assert!(App::Body1m.valid_body(1 << 20, b""));
        let c = ServerSpec::parse("host-c").unwrap();
        assert!(App::Hello.supported_by(&c));
        assert!(!App::Body10k.supported_by(&c));
        assert!(App::Body10k.supported_by(&ServerSpec::parse("granian").unwrap()));
        assert!(App::Work.valid_body(16, b"work=2664667000\n"));
        assert!(!App::Work.valid_body(13, b"Hello, world!"));
        assert!(!App::Work.supported_by(&c));
        assert!(!App::Work.supported_by(&ServerSpec::parse("bare-hyper").unwrap()));
        assert!(App::Work.supported_by(&ServerSpec::parse("host-py").unwrap()));
    }

    #[test]
    fn a_url_server_runs_only_the_url_workload() {
        let u = ServerSpec::parse("url:http://127.0.0.1:9/a?b").unwrap();
        assert!(App::Url.supported_by(&u));
        assert!(!App::Hello.supported_by(&u));
        assert!(!App::Url.supported_by(&ServerSpec::parse("host-py").unwrap()));
        let r = App::Url.request(&u);
        assert_eq!(
            r.to_bytes(),
            b"GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"
        );
        assert!(App::Url.valid_status(204) && !App::Url.valid_status(404));
        assert!(!App::Hello.valid_status(204));
        let p = App::Echo10k.request(&ServerSpec::parse("host-c").unwrap());
        assert!(
            p.to_bytes().starts_with(
                b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 10240\r\n\r\n"
            )
        );
    }
}
