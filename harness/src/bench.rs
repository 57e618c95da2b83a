//! `bench`: an in-process HTTP/1.1 load generator (tokio + hyper client,
//! keep-alive, every response validated), run against several servers in one
//! go, with HdrHistogram latencies, JSON, Markdown and SVG output; plus idle
//! keep-alive memory and a large chunked upload.
//!
//! All servers run at once and are measured in interleaved rounds (every
//! workload and concurrency on every server once per round, the servers in an
//! order rotated by the round), so that the machine's drift over minutes
//! lands on all of them alike; the median round is reported and server ratios
//! are medians of same-round ratios.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::{LaunchArgs, make_env};
use crate::servers::{self, Env, Running, ServerSpec};
use crate::svg;
use crate::wire::{AsyncConn, Framing, Head, ReadOptions, Sink, WireError};
use crate::{machine, procfs};

/// The benchmark workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
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
}

/// The body `bench_app`'s `/work` route computes (the sum of i*i below 2000).
const WORK_BODY: &[u8] = b"work=2664667000\n";

impl App {
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
        }
    }

    fn method_path(self) -> (&'static str, &'static str) {
        match self {
            App::Hello => ("GET", "/hello"),
            App::Echo10k => ("POST", "/echo"),
            App::Stream => ("GET", "/stream"),
            App::Upload1m => ("POST", "/count"),
            App::Body0 => ("GET", "/bytes?n=0"),
            App::Body10k => ("GET", "/bytes?n=10240"),
            App::Body1m => ("GET", "/bytes?n=1048576"),
            App::Work => ("GET", "/work"),
        }
    }

    fn request_body(self) -> Bytes {
        match self {
            App::Echo10k => crate::cases::pattern(10240).into(),
            App::Upload1m => crate::cases::pattern(1 << 20).into(),
            _ => Bytes::new(),
        }
    }

    /// Whether a response body is the right one (length, or the count line).
    fn valid_body(self, len: usize, first: &[u8]) -> bool {
        match self {
            App::Hello => len == 13,
            App::Echo10k | App::Stream | App::Body10k => len == 10240,
            App::Upload1m => first.starts_with(b"bytes=1048576"),
            App::Body0 => len == 0,
            App::Body1m => len == 1 << 20,
            App::Work => first.starts_with(WORK_BODY),
        }
    }

    /// Whether a server can run this workload (host-c has only hello, echo and count;
    /// `work` is Python, so only the WSGI servers run it).
    pub fn supported_by(self, spec: &ServerSpec) -> bool {
        match spec.name.as_str() {
            "host-c" => matches!(self, App::Hello | App::Echo10k | App::Upload1m),
            "bare-hyper" => self != App::Work,
            _ => true,
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Servers (repeatable): bare-hyper, host-c, host-py, granian, gunicorn, waitress, cmd:TEMPLATE.
    #[arg(long = "server", default_values_t = ["bare-hyper", "host-c", "host-py", "granian", "gunicorn", "waitress"].map(String::from))]
    pub servers: Vec<String>,
    /// Workloads (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "hello")]
    pub app: Vec<App>,
    /// Concurrent keep-alive connections (comma-separated list for scaling runs).
    #[arg(
        short = 'c',
        long = "concurrency",
        value_delimiter = ',',
        default_value = "64"
    )]
    pub concurrency: Vec<usize>,
    /// Measured duration of each run (e.g. 10s, 500ms).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each measured run (not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Interleaved rounds: each round runs every workload and concurrency on every server
    /// (servers in an order rotated by the round); the median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Threads of the load generator, each a single-threaded tokio runtime
    /// driving its share of the connections.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Also run wrk on the same server and workload (GET workloads) and record its rps.
    #[arg(long)]
    pub wrk: bool,
    /// Rounds of the `--wrk` comparison (after the interleaved rounds, per server): this
    /// generator and wrk alternate, medians are compared.
    #[arg(long, default_value_t = 3)]
    pub wrk_rounds: usize,
    /// Also measure the servers' resident memory holding this many idle keep-alive connections.
    #[arg(long)]
    pub idle_conns: Option<usize>,
    /// Also stream a chunked upload of this many MiB to /count, sampling the server's RSS.
    #[arg(long)]
    pub upload_mib: Option<u64>,
    /// JSON output (default OUT/bench.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Markdown tables output (default OUT/bench.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Directory for the SVG charts (default OUT).
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Skip the load runs (only idle/upload measurements).
    #[arg(long)]
    pub no_load: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Error counters of one run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Errors {
    pub connect: u64,
    pub io: u64,
    pub status: u64,
    pub body: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.status + self.body
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub server: String,
    pub app: App,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub rps: f64,
    pub errors: Errors,
    /// Connections re-opened after the server closed them (e.g. after a close-delimited response).
    pub reconnects: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Server CPU seconds (user+system, whole process tree) per 1000 requests.
    pub server_cpu_ms_per_1k: f64,
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

#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub server: String,
    pub connections: usize,
    pub established: usize,
    pub still_open: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadResult {
    pub server: String,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub ok: bool,
    pub response: String,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_growth_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub date: String,
    pub machine: String,
    pub git_rev: String,
    pub threads: usize,
    pub client_threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Interleaved rounds (`--rounds`); every reported run is the median round.
    pub rounds: usize,
    pub servers: BTreeMap<String, String>,
    pub command: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub runs: Vec<RunResult>,
    pub idle: Vec<IdleResult>,
    pub uploads: Vec<UploadResult>,
    pub errors: Vec<String>,
}

/// Counters every connection of a load run updates.
#[derive(Default)]
struct Shared {
    done: AtomicU64,
    errors_connect: AtomicU64,
    errors_io: AtomicU64,
    errors_status: AtomicU64,
    errors_body: AtomicU64,
    reconnects: AtomicU64,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one exchange produced: the status, the body's length and first bytes,
/// and whether the server will close (Connection: close or a close-delimited
/// body). Nothing else of the response is kept.
#[derive(Default)]
struct Answer {
    status: u16,
    body_len: usize,
    head: Vec<u8>,
    closing: bool,
}

impl Sink for Answer {
    fn head(&mut self, head: &Head<'_>, framing: Framing) {
        self.status = head.status;
        self.closing =
            framing == Framing::CloseDelimited || head.fields.has_token("connection", "close");
    }

    fn data(&mut self, bytes: &[u8]) {
        self.body_len += bytes.len();
        if self.head.len() < 32 {
            let k = bytes.len().min(32 - self.head.len());
            self.head.extend_from_slice(&bytes[..k]);
        }
    }
}

/// Sends the pre-serialised `request` and reads its response (1xx skipped).
async fn exchange(
    conn: &mut AsyncConn,
    request: &[u8],
    head_request: bool,
) -> Result<Answer, WireError> {
    conn.send(request).await?;
    let mut answer = Answer::default();
    let opts = ReadOptions {
        head_request,
        return_interim: false,
    };
    conn.read_with(opts, &mut answer).await?;
    Ok(answer)
}

fn serialize_request(app: App) -> Vec<u8> {
    let (method, path) = app.method_path();
    let body = app.request_body();
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n").into_bytes();
    if method == "POST" {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(&body);
    r
}

/// One connection's request loop. Returns its latency histogram (µs).
async fn worker(
    app: App,
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    measure_from: Instant,
    end: Instant,
    shared: Arc<Shared>,
) -> Histogram<u64> {
    let mut hist = new_histogram();
    let mut conn: Option<AsyncConn> = None;
    let mut first = true;
    while Instant::now() < end {
        let c = match &mut conn {
            Some(c) => c,
            None => match AsyncConn::connect(addr).await {
                Ok(c) => {
                    if !first {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    conn.insert(c)
                }
                Err(_) => {
                    shared.errors_connect.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let answer = match exchange(c, &request, false).await {
            Ok(a) => a,
            Err(_) => {
                shared.errors_io.fetch_add(1, Ordering::Relaxed);
                conn = None;
                continue;
            }
        };
        let dt = t0.elapsed();
        if answer.status != 200 {
            shared.errors_status.fetch_add(1, Ordering::Relaxed);
        } else if !app.valid_body(answer.body_len, &answer.head) {
            shared.errors_body.fetch_add(1, Ordering::Relaxed);
        } else if t0 >= measure_from && Instant::now() <= end + Duration::from_secs(5) {
            let _ = hist.record((dt.as_micros() as u64).max(1));
            shared.done.fetch_add(1, Ordering::Relaxed);
        }
        if answer.closing {
            conn = None;
        }
    }
    hist
}

/// A latency histogram in µs, from 1 µs to 120 s, three significant figures.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn progress_bar(label: &str, total: Duration) -> ProgressBar {
    let pb = ProgressBar::new(total.as_millis() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>34} [{bar:30}] {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

/// A single-threaded tokio runtime with I/O and timers, as the generator's
/// threads and the idle-connection measurement use.
fn single_threaded_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The load generator's threads: one single-threaded tokio runtime per
/// `--client-threads`, each driving its share of the connections.
///
/// Single-threaded runtimes, because a work-stealing one reorders ready
/// connections (a LIFO slot, a bounded local queue spilling into a shared one)
/// and so adds its own tail to every latency it measures at high concurrency;
/// here a connection whose response has arrived waits only behind the others
/// that became ready before it, as in wrk's one event loop per thread.
pub struct Client {
    runtimes: Vec<tokio::runtime::Runtime>,
}

impl Client {
    /// `threads` runtimes (at least one).
    pub fn new(threads: usize) -> Result<Client> {
        let runtimes = (0..threads.max(1))
            .map(|_| single_threaded_runtime())
            .collect::<std::io::Result<_>>()?;
        Ok(Client { runtimes })
    }

    /// Runs `conns` connections of `app` against `addr` until `end`, dealt out
    /// evenly over the threads, and merges their histograms (requests sent
    /// from `measure_from` on) and counters. Meanwhile calls `tick` on this
    /// thread every 200 ms.
    fn drive(
        &self,
        addr: SocketAddr,
        app: App,
        conns: usize,
        measure_from: Instant,
        end: Instant,
        mut tick: impl FnMut(&Shared),
    ) -> (Histogram<u64>, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        let request = Arc::new(serialize_request(app));
        let threads = self.runtimes.len();
        std::thread::scope(|scope| {
            let drivers: Vec<_> = self
                .runtimes
                .iter()
                .enumerate()
                .map(|(t, rt)| {
                    let (request, shared) = (request.clone(), shared.clone());
                    let mine = conns / threads + usize::from(t < conns % threads);
                    scope.spawn(move || {
                        rt.block_on(async move {
                            let tasks: Vec<_> = (0..mine)
                                .map(|_| {
                                    tokio::spawn(worker(
                                        app,
                                        addr,
                                        request.clone(),
                                        measure_from,
                                        end,
                                        shared.clone(),
                                    ))
                                })
                                .collect();
                            let mut hist = new_histogram();
                            for t in tasks {
                                if let Ok(h) = t.await {
                                    let _ = hist.add(h);
                                }
                            }
                            hist
                        })
                    })
                })
                .collect();
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(200));
                tick(&shared);
            }
            let mut hist = new_histogram();
            for d in drivers {
                if let Ok(h) = d.join() {
                    let _ = hist.add(h);
                }
            }
            (hist, shared)
        })
    }
}

/// Run one load test against a running server.
pub fn load(
    client: &Client,
    srv: &Running,
    app: App,
    conns: usize,
    warmup: Duration,
    duration: Duration,
) -> RunResult {
    let addr = srv.addr;
    let label = format!("{} {} c{}", srv.spec.label(), app.name(), conns);
    let pb = progress_bar(&label, warmup + duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let cpu_pid = srv.pid();
    let mut cpu_before = None;
    let (mut last, mut last_t) = (0, Instant::now());
    let (hist, shared) = client.drive(addr, app, conns, measure_from, end, |shared| {
        if cpu_before.is_none() && Instant::now() >= measure_from {
            cpu_before = Some(procfs::tree_cpu_ticks(cpu_pid));
        }
        let done = shared.done.load(Ordering::Relaxed);
        let dt = last_t.elapsed().as_secs_f64();
        pb.set_position(
            start
                .elapsed()
                .as_millis()
                .min((warmup + duration).as_millis()) as u64,
        );
        if done > last {
            pb.set_message(format!("{:>9.0} rps", (done - last) as f64 / dt));
        }
        last = done;
        last_t = Instant::now();
    });
    let cpu_before = cpu_before.unwrap_or(0);
    let cpu_after = procfs::tree_cpu_ticks(cpu_pid);
    pb.finish_and_clear();
    let secs = duration.as_secs_f64();
    let requests = hist.len();
    let cpu_s = cpu_after.saturating_sub(cpu_before) as f64 / procfs::ticks_per_sec();
    let r = RunResult {
        server: srv.spec.label(),
        app,
        concurrency: conns,
        seconds: secs,
        requests,
        rps: requests as f64 / secs,
        errors: Errors {
            connect: shared.errors_connect.load(Ordering::Relaxed),
            io: shared.errors_io.load(Ordering::Relaxed),
            status: shared.errors_status.load(Ordering::Relaxed),
            body: shared.errors_body.load(Ordering::Relaxed),
        },
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        mean_us: if requests > 0 { hist.mean() } else { 0.0 },
        p50_us: hist.value_at_quantile(0.5),
        p90_us: hist.value_at_quantile(0.9),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
        server_cpu_ms_per_1k: if requests > 0 {
            cpu_s * 1000.0 * 1000.0 / requests as f64
        } else {
            0.0
        },
        server_rss_kib: srv.rss_kib(),
        round_rps: Vec::new(),
        round_p99_us: Vec::new(),
        wrk_rps: None,
        wrk_p99_us: None,
        rounds_rps: Vec::new(),
        wrk_rounds_rps: Vec::new(),
    };
    eprintln!(
        "  {:<34} {:>9.0} rps  p50 {:>7}  p99 {:>7}  max {:>7}  errors {}{}",
        label,
        r.rps,
        fmt_us(r.p50_us),
        fmt_us(r.p99_us),
        fmt_us(r.max_us),
        r.errors.total(),
        if r.reconnects > 0 {
            format!("  reconnects {}", r.reconnects)
        } else {
            String::new()
        }
    );
    r
}

pub fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

/// Run wrk against the same server and workload; returns (rps, p99 µs).
pub fn run_wrk(
    addr: SocketAddr,
    app: App,
    conns: usize,
    threads: usize,
    duration: Duration,
) -> Result<(f64, Option<u64>)> {
    let (method, path) = app.method_path();
    if method != "GET" {
        bail!("wrk comparison only for GET workloads");
    }
    let out = std::process::Command::new("wrk")
        .arg(format!("-t{}", threads.min(conns).max(1)))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg(format!("http://{addr}{path}"))
        .output()
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| {
            format!(
                "no Requests/sec in wrk output ({}): {} {}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    let p99 = text.lines().find_map(|l| {
        let l = l.trim();
        let v = l.strip_prefix("99%")?.trim();
        parse_wrk_latency(v)
    });
    Ok((rps, p99))
}

fn parse_wrk_latency(v: &str) -> Option<u64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.trim().parse().ok()?;
    let us = match unit.trim() {
        "us" => n,
        "ms" => n * 1000.0,
        "s" => n * 1_000_000.0,
        "m" => n * 60_000_000.0,
        _ => return None,
    };
    Some(us as u64)
}

/// Hold `n` idle keep-alive connections (each served one request) and measure the server's RSS.
///
/// On a runtime of its own, dropped at the end: that closes every connection
/// before the next measurement.
pub fn idle_rss(srv: &Running, n: usize) -> Result<IdleResult> {
    let addr = srv.addr;
    let before = srv.rss_kib();
    let rt = single_threaded_runtime()?;
    let (established, still_open, after) = rt.block_on(async {
        let mut senders = Vec::with_capacity(n);
        for batch in 0..n.div_ceil(100) {
            let count = 100.min(n - batch * 100);
            let mut joins = Vec::new();
            for _ in 0..count {
                joins.push(tokio::spawn(async move {
                    let mut s = connect(addr).await.ok()?;
                    let req = Request::builder()
                        .uri("/hello")
                        .header(hyper::header::HOST, "bench")
                        .body(Full::new(Bytes::new()))
                        .ok()?;
                    let resp = tokio::time::timeout(Duration::from_secs(30), s.send_request(req))
                        .await
                        .ok()?
                        .ok()?;
                    let _ = resp.into_body().collect().await.ok()?;
                    Some(s)
                }));
            }
            for j in joins {
                if let Ok(Some(s)) = j.await {
                    senders.push(s);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = procfs::tree_rss_kib(srv.pid());
        let open = senders.iter().filter(|s| !s.is_closed()).count();
        (senders.len(), open, after)
    });
    Ok(IdleResult {
        server: srv.spec.label(),
        connections: n,
        established,
        still_open,
        rss_before_kib: before,
        rss_after_kib: after,
    })
}

/// Stream a chunked upload of `mib` MiB to /count, sampling the server's RSS every 20 ms.
pub fn upload(srv: &Running, mib: u64) -> UploadResult {
    use std::io::Write;
    let pid = srv.pid();
    let before = srv.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let stop = stop.clone();
        let peak = peak.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(procfs::tree_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let total = mib << 20;
    let t0 = Instant::now();
    let result = (|| -> Result<String> {
        let mut conn = crate::wire::Conn::connect(srv.addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(300)))?;
        conn.send(b"POST /count HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        let block: Vec<u8> = crate::cases::pattern(65536);
        let mut framed = Vec::with_capacity(65536 + 16);
        framed.extend_from_slice(b"10000\r\n");
        framed.extend_from_slice(&block);
        framed.extend_from_slice(b"\r\n");
        let mut s = conn.stream().try_clone()?;
        let mut sent = (|| -> std::io::Result<()> {
            for _ in 0..(total / 65536) {
                s.write_all(&framed)?;
            }
            s.write_all(b"0\r\n\r\n")
        })();
        // the server may answer early (e.g. 413) and close: report its answer
        let r = match conn.read_response(false) {
            Ok(r) => r,
            Err(e) => {
                sent?;
                return Err(e.into());
            }
        };
        if let Err(e) = sent.as_mut() {
            return Ok(format!(
                "{} {} (upload aborted: {e})",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            ));
        }
        Ok(format!(
            "{} {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        ))
    })();
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(Ordering::Relaxed).max(srv.rss_kib());
    let (ok, response) = match result {
        Ok(r) => (r.starts_with(&format!("200 bytes={total}")), r),
        Err(e) => (false, format!("error: {e:#}")),
    };
    UploadResult {
        server: srv.spec.label(),
        bytes: total,
        seconds: secs,
        mib_per_s: mib as f64 / secs,
        ok,
        response,
        rss_before_kib: before,
        rss_peak_kib: peak,
        rss_growth_kib: peak.saturating_sub(before),
    }
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let env = make_env(&a.launch, "bench_app:app", "bench", true)?;
    let specs: Vec<ServerSpec> = a
        .servers
        .iter()
        .map(|s| ServerSpec::parse(s))
        .collect::<Result<_>>()?;
    let client = Client::new(a.client_threads)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut report = Report {
        meta: Meta {
            date: machine::utc_now(),
            machine: machine::summary(),
            git_rev: machine::git_rev(&env.repo),
            threads: env.threads,
            client_threads: a.client_threads,
            duration_s: a.duration.as_secs_f64(),
            warmup_s: a.warmup.as_secs_f64(),
            rounds: a.rounds,
            servers: specs.iter().map(|s| (s.label(), env.describe(s))).collect(),
            command: format!("isapi-harness {}", args.join(" ")),
        },
        runs: Vec::new(),
        idle: Vec::new(),
        uploads: Vec::new(),
        errors: Vec::new(),
    };
    // every server runs until the end; `Running` stops its server when dropped, on any exit path
    let mut running: Vec<Option<Running>> = specs
        .iter()
        .map(|spec| {
            eprintln!("bench: starting {} ({})", spec.label(), env.describe(spec));
            servers::start(&env, spec)
                .inspect_err(|e| {
                    eprintln!("  did not start: {e:#}");
                    report
                        .errors
                        .push(format!("{}: did not start: {e:#}", spec.label()));
                })
                .ok()
        })
        .collect();
    if !a.no_load {
        let (apps, concs) = (unique(&a.app), unique(&a.concurrency));
        let mut rounds = interleaved_rounds(&client, &env, &a, &mut running, &mut report.errors);
        for (i, slot) in running.iter_mut().enumerate() {
            for &app in &apps {
                for &c in &concs {
                    let Some(mut r) = rounds.remove(&(i, app, c)).and_then(median_round) else {
                        continue;
                    };
                    if a.wrk && app.method_path().0 == "GET" {
                        let what = format!("the wrk comparison of {} c={c}", app.name());
                        if let Some(srv) = revive(&env, slot, &what, &mut report.errors) {
                            eprintln!("bench: {} {what}", srv.spec.label());
                            compare_wrk(&client, srv, &mut r, &a, &mut report.errors);
                        }
                    }
                    report.runs.push(r);
                }
            }
        }
    }
    for srv in running.iter().flatten() {
        let label = srv.spec.label();
        if let Some(n) = a.idle_conns {
            match idle_rss(srv, n) {
                Ok(r) => {
                    eprintln!(
                        "  {label} idle: {} of {} connections held open, RSS {} → {} KiB",
                        r.still_open, r.connections, r.rss_before_kib, r.rss_after_kib
                    );
                    report.idle.push(r);
                }
                Err(e) => report
                    .errors
                    .push(format!("{label}: idle connections: {e:#}")),
            }
        }
        if let Some(mib) = a.upload_mib {
            let r = upload(srv, mib);
            eprintln!(
                "  {label} upload {mib} MiB chunked: {} in {:.1}s ({:.0} MiB/s), RSS +{} KiB (peak {} KiB)",
                r.response, r.seconds, r.mib_per_s, r.rss_growth_kib, r.rss_peak_kib
            );
            report.uploads.push(r);
        }
    }
    running.into_iter().flatten().for_each(Running::stop);
    let json_path = a
        .json
        .clone()
        .unwrap_or_else(|| env.out_dir.join("bench.json"));
    let md_path = a
        .markdown
        .clone()
        .unwrap_or_else(|| env.out_dir.join("bench.md"));
    let svg_dir = a.svg_dir.clone().unwrap_or_else(|| env.out_dir.clone());
    for p in [&json_path, &md_path] {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
    }
    std::fs::create_dir_all(&svg_dir)?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let charts = svg::write_charts(&report, &svg_dir)?;
    let md = markdown(&report, &charts, md_path.parent());
    std::fs::File::create(&md_path)?.write_all(md.as_bytes())?;
    eprintln!(
        "wrote {}, {} and {} charts in {}",
        json_path.display(),
        md_path.display(),
        charts.len(),
        svg_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The runs of one (server index, workload, concurrency), one per round (index = round).
type RoundRuns = BTreeMap<(usize, App, usize), Vec<RunResult>>;

/// `a.rounds` interleaved rounds: each round runs every workload and concurrency on every
/// running server that supports it, the servers in an order rotated by the round number.
/// A server that cannot be restarted leaves `running` (its earlier rounds stay).
fn interleaved_rounds(
    client: &Client,
    env: &Env,
    a: &BenchArgs,
    running: &mut [Option<Running>],
    errors: &mut Vec<String>,
) -> RoundRuns {
    let mut runs = RoundRuns::new();
    for round in 0..a.rounds {
        for app in unique(&a.app) {
            for c in unique(&a.concurrency) {
                let what = format!("{} c={c} (round {}/{})", app.name(), round + 1, a.rounds);
                eprintln!("bench: {what}");
                let able: Vec<usize> = (0..running.len())
                    .filter(|&i| {
                        running[i]
                            .as_ref()
                            .is_some_and(|s| app.supported_by(&s.spec))
                    })
                    .collect();
                for i in rotated(&able, round) {
                    let Some(srv) = revive(env, &mut running[i], &what, errors) else {
                        continue;
                    };
                    let r = load(client, srv, app, c, a.warmup, a.duration);
                    if !srv.alive() {
                        let why = srv.exit_status().unwrap_or_default();
                        errors.push(format!(
                            "{} died ({why}) during {what}; that run's numbers are void",
                            srv.spec.label()
                        ));
                    }
                    runs.entry((i, app, c)).or_default().push(r);
                }
            }
        }
    }
    runs
}

/// The server in `slot`, restarted first if it died (noted in `errors`); a failed restart
/// empties the slot.
fn revive<'a>(
    env: &Env,
    slot: &'a mut Option<Running>,
    what: &str,
    errors: &mut Vec<String>,
) -> Option<&'a mut Running> {
    let srv = slot.as_mut()?;
    if !srv.alive() {
        let label = srv.spec.label();
        let why = srv.exit_status().unwrap_or_default();
        eprintln!("  {label} died ({why}); restarting it");
        errors.push(format!("{label} died ({why}) before {what}; restarted"));
        match servers::start(env, &srv.spec) {
            Ok(fresh) => std::mem::replace(srv, fresh).stop(),
            Err(e) => {
                errors.push(format!("{label}: restart failed: {e:#}"));
                *slot = None;
                return None;
            }
        }
    }
    slot.as_mut()
}

/// `v` without repeats, in first-seen order.
fn unique<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(*x);
        }
    }
    out
}

/// `v` rotated left by `round` (round 0: A B C, round 1: B C A, round 2: C A B, ...).
fn rotated<T: Copy>(v: &[T], round: usize) -> Vec<T> {
    let mut v = v.to_vec();
    let n = v.len();
    if n > 0 {
        v.rotate_left(round % n);
    }
    v
}

/// The run of the median-rps round (the lower middle for an even count), carrying every
/// round's rps and p99 (index = round). None without rounds.
fn median_round(rounds: Vec<RunResult>) -> Option<RunResult> {
    let mut by_rps: Vec<usize> = (0..rounds.len()).collect();
    by_rps.sort_by(|&i, &j| rounds[i].rps.total_cmp(&rounds[j].rps));
    let pick = *by_rps.get(rounds.len().checked_sub(1)? / 2)?;
    let round_rps = rounds.iter().map(|r| r.rps).collect();
    let round_p99_us = rounds.iter().map(|r| r.p99_us).collect();
    let mut r = rounds.into_iter().nth(pick)?;
    r.round_rps = round_rps;
    r.round_p99_us = round_p99_us;
    Some(r)
}

/// Median, min and max of the per-round ratios of two servers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PairedRatio {
    median: f64,
    min: f64,
    max: f64,
    /// How many rounds were paired.
    pairs: usize,
}

/// The ratios `a[i] / b[i]` of the same round `i` (rounds missing on either side, or with
/// `b[i] == 0`, skipped): their median, min and max. None without a pair.
fn paired_ratio(a: &[f64], b: &[f64]) -> Option<PairedRatio> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| **y != 0.0)
        .map(|(x, y)| x / y)
        .collect();
    if ratios.is_empty() {
        return None;
    }
    Some(PairedRatio {
        median: median(&ratios),
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        pairs: ratios.len(),
    })
}

/// The spread of the rounds around `mid` in percent: (max − min) / 2 / mid × 100; None for
/// fewer than two rounds or `mid` ≤ 0.
fn spread_pct(rounds: &[f64], mid: f64) -> Option<f64> {
    if rounds.len() < 2 || mid <= 0.0 {
        return None;
    }
    let max = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    Some((max - min) / 2.0 / mid * 100.0)
}

/// Alternate wrk and this generator on the same server; store both medians.
fn compare_wrk(
    client: &Client,
    srv: &Running,
    r: &mut RunResult,
    a: &BenchArgs,
    errors: &mut Vec<String>,
) {
    let mut ours = vec![r.rps];
    let mut theirs = Vec::new();
    let mut p99s = Vec::new();
    for round in 0..a.wrk_rounds.max(1) {
        if round > 0 {
            ours.push(
                load(
                    client,
                    srv,
                    r.app,
                    r.concurrency,
                    Duration::from_millis(500),
                    a.duration,
                )
                .rps,
            );
        }
        match run_wrk(srv.addr, r.app, r.concurrency, a.client_threads, a.duration) {
            Ok((rps, p99)) => {
                eprintln!("  {:<34} {:>9.0} rps  (wrk)", "wrk", rps);
                theirs.push(rps);
                p99s.extend(p99);
            }
            Err(e) => {
                errors.push(format!("{}: wrk: {e:#}", srv.spec.label()));
                return;
            }
        }
    }
    let (m_ours, m_wrk) = (median(&ours), median(&theirs));
    eprintln!(
        "  {:<34} median {:>9.0} vs wrk {:>9.0} rps: ratio {:.3}",
        "comparison",
        m_ours,
        m_wrk,
        m_ours / m_wrk
    );
    p99s.sort_unstable();
    r.wrk_rps = Some(m_wrk);
    r.wrk_p99_us = p99s.get(p99s.len() / 2).copied();
    r.rounds_rps = ours;
    r.wrk_rounds_rps = theirs;
}

fn find<'a>(r: &'a Report, server: &str, app: App, c: usize) -> Option<&'a RunResult> {
    r.runs
        .iter()
        .find(|x| x.server == server && x.app == app && x.concurrency == c)
}

/// The header's words on the rounds.
fn rounds_sentence(rounds: usize) -> String {
    if rounds == 1 {
        "one round (the servers interleaved per workload and concurrency); cells: requests/s (p99)"
            .into()
    } else {
        format!(
            "{rounds} interleaved rounds (each runs every server once per workload and concurrency, \
             the servers in an order rotated by the round); cells: requests/s of the median-rps round \
             ± half the range of the rounds in % of it (p99 of that round); ratios: median of the \
             same-round ratios (min–max)"
        )
    }
}

/// A ratio-table cell for servers `x` / `y`: the median of the same-round rps ratios, their
/// range when there are several rounds, and the median same-round p99 ratio.
fn ratio_cell(x: &RunResult, y: &RunResult) -> Option<String> {
    let rps = paired_ratio(&x.round_rps, &y.round_rps)?;
    let p99s = |r: &RunResult| r.round_p99_us.iter().map(|&u| u as f64).collect::<Vec<_>>();
    let p99 = paired_ratio(&p99s(x), &p99s(y))
        .map(|q| format!("{:.2}×", q.median))
        .unwrap_or_else(|| "—".into());
    Some(if rps.pairs > 1 {
        format!(
            "{:.2}× ({:.2}–{:.2}; p99 {p99})",
            rps.median, rps.min, rps.max
        )
    } else {
        format!("{:.2}× (p99 {p99})", rps.median)
    })
}

/// Markdown tables of a report; chart paths are made relative to `rel_to`.
pub fn markdown(r: &Report, charts: &[PathBuf], rel_to: Option<&std::path::Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let servers: Vec<String> = r.meta.servers.keys().cloned().collect();
    let order: Vec<String> = {
        // keep the command-line order
        let mut seen = Vec::new();
        for x in &r.runs {
            if !seen.contains(&x.server) {
                seen.push(x.server.clone());
            }
        }
        for x in &servers {
            if !seen.contains(x) {
                seen.push(x.clone());
            }
        }
        seen
    };
    let _ = writeln!(
        s,
        "Run {} on {} (git {}); every server 1 process with {} request threads; load generator: {} tokio thread(s), \
         {} s measured after {} s warm-up per run; {}; command: `{}`.\n",
        r.meta.date,
        r.meta.machine,
        r.meta.git_rev,
        r.meta.threads,
        r.meta.client_threads,
        r.meta.duration_s,
        r.meta.warmup_s,
        rounds_sentence(r.meta.rounds),
        r.meta.command
    );
    let _ = writeln!(s, "| server | launched as |\n|---|---|");
    for (k, v) in &r.meta.servers {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(s);
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut apps: Vec<App> = r.runs.iter().map(|x| x.app).collect();
    apps.sort();
    apps.dedup();
    let mut concs: Vec<usize> = r.runs.iter().map(|x| x.concurrency).collect();
    concs.sort_unstable();
    concs.dedup();
    for app in &apps {
        let _ = writeln!(s, "### {} — requests/s (p99 latency)\n", app.name());
        let _ = write!(s, "| server |");
        for c in &concs {
            let _ = write!(s, " c={c} |");
        }
        let _ = writeln!(s);
        let _ = write!(s, "|---|");
        for _ in &concs {
            let _ = write!(s, "---:|");
        }
        let _ = writeln!(s);
        for srv in &order {
            if !r.runs.iter().any(|x| &x.server == srv && x.app == *app) {
                continue;
            }
            let _ = write!(s, "| {srv} |");
            for c in &concs {
                match find(r, srv, *app, *c) {
                    Some(x) => {
                        let err = if x.errors.total() > 0 {
                            format!(", **{} errors**", x.errors.total())
                        } else {
                            String::new()
                        };
                        let spread = spread_pct(&x.round_rps, x.rps)
                            .map(|p| format!(" ±{p:.0}%"))
                            .unwrap_or_default();
                        let _ = write!(s, " {:.0}{spread} ({}{err}) |", x.rps, fmt_us(x.p99_us));
                    }
                    None => {
                        let _ = write!(s, " — |");
                    }
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
        // ratios that the targets are stated in
        let pairs = [
            ("host-c", "bare-hyper", 0.9),
            ("host-py", "granian", 1.0),
            ("host-py", "gunicorn", 3.0),
            ("host-py", "waitress", 1.0),
        ];
        let mut rows = Vec::new();
        for (a_, b_, target) in pairs {
            let mut cells = Vec::new();
            let mut any = false;
            for c in &concs {
                let cell = find(r, a_, *app, *c)
                    .zip(find(r, b_, *app, *c))
                    .and_then(|(x, y)| ratio_cell(x, y));
                any |= cell.is_some();
                cells.push(cell.unwrap_or_else(|| "—".into()));
            }
            if any {
                rows.push(format!(
                    "| {a_} / {b_} (target ≥ {target}×) | {} |",
                    cells.join(" | ")
                ));
            }
        }
        if !rows.is_empty() {
            let _ = write!(
                s,
                "| ratio: median of same-round ratios (min–max; p99 ratio, lower is better) |"
            );
            for c in &concs {
                let _ = write!(s, " c={c} |");
            }
            let _ = writeln!(s);
            let _ = write!(s, "|---|");
            for _ in &concs {
                let _ = write!(s, "---:|");
            }
            let _ = writeln!(s);
            for row in rows {
                let _ = writeln!(s, "{row}");
            }
            let _ = writeln!(s);
        }
    }
    if r.runs.iter().any(|x| x.wrk_rps.is_some()) {
        let _ = writeln!(
            s,
            "### Load generator vs wrk (same server, same workload)\n"
        );
        let _ = writeln!(
            s,
            "After the interleaved rounds, comparison rounds alternate this generator and wrk (same connections, \
             threads and duration; the first generator round is the median interleaved round); medians compared.\n"
        );
        let _ = writeln!(
            s,
            "| server | workload | c | isapi-harness rps (rounds) | wrk rps (rounds) | ratio of medians | harness p99 | wrk p99 |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
        for x in r.runs.iter().filter(|x| x.wrk_rps.is_some()) {
            let w = x.wrk_rps.unwrap_or(0.0);
            let ours = if x.rounds_rps.is_empty() {
                x.rps
            } else {
                median(&x.rounds_rps)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} ({}) | {:.0} ({}) | {:.3} | {} | {} |",
                x.server,
                x.app.name(),
                x.concurrency,
                ours,
                list(&x.rounds_rps),
                w,
                list(&x.wrk_rounds_rps),
                ours / w.max(1.0),
                fmt_us(x.p99_us),
                x.wrk_p99_us.map(fmt_us).unwrap_or_else(|| "—".into())
            );
        }
        let _ = writeln!(s);
    }
    if !r.runs.is_empty() {
        let _ = writeln!(s, "### Details (the median round of each)\n");
        let _ = writeln!(
            s,
            "| server | workload | c | requests | rps | rps by round | mean | p50 | p90 | p99 | p99.9 | max | errors | reconnects | server CPU ms / 1k req | server RSS |"
        );
        let _ = writeln!(
            s,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for x in &r.runs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} MiB |",
                x.server,
                x.app.name(),
                x.concurrency,
                x.requests,
                x.rps,
                list(&x.round_rps),
                fmt_us(x.mean_us as u64),
                fmt_us(x.p50_us),
                fmt_us(x.p90_us),
                fmt_us(x.p99_us),
                fmt_us(x.p999_us),
                fmt_us(x.max_us),
                x.errors.total(),
                x.reconnects,
                x.server_cpu_ms_per_1k,
                x.server_rss_kib / 1024
            );
        }
        let _ = writeln!(s);
    }
    if !r.idle.is_empty() {
        let _ = writeln!(s, "### Resident memory with idle keep-alive connections\n");
        let _ = writeln!(
            s,
            "| server | connections asked | established | still open | RSS before | RSS with connections | per connection |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for x in &r.idle {
            let per = if x.still_open > 0 {
                format!(
                    "{:.1} KiB",
                    x.rss_after_kib.saturating_sub(x.rss_before_kib) as f64 / x.still_open as f64
                )
            } else {
                "—".into()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} MiB | {:.1} MiB | {per} |",
                x.server,
                x.connections,
                x.established,
                x.still_open,
                x.rss_before_kib as f64 / 1024.0,
                x.rss_after_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(s);
    }
    if !r.uploads.is_empty() {
        let _ = writeln!(s, "### Chunked upload streamed to /count\n");
        let _ = writeln!(
            s,
            "| server | size | result | time | throughput | RSS before | RSS peak | growth |"
        );
        let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|");
        for x in &r.uploads {
            let _ = writeln!(
                s,
                "| {} | {} MiB | {} | {:.2} s | {:.0} MiB/s | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
                x.server,
                x.bytes >> 20,
                if x.ok {
                    "ok".to_owned()
                } else {
                    format!("**{}**", x.response)
                },
                x.seconds,
                x.mib_per_s,
                x.rss_before_kib as f64 / 1024.0,
                x.rss_peak_kib as f64 / 1024.0,
                x.rss_growth_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(s);
    }
    if !charts.is_empty() {
        let _ = writeln!(s, "### Charts\n");
        for c in charts {
            let p = rel_to
                .and_then(|base| c.strip_prefix(base).ok())
                .unwrap_or(c.as_path());
            let _ = writeln!(s, "![{}]({})\n", p.display(), p.display());
        }
    }
    if !r.errors.is_empty() {
        let _ = writeln!(s, "### Problems during the run\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn wrk_latency_units() {
        assert_eq!(parse_wrk_latency("1.23ms"), Some(1230));
        assert_eq!(parse_wrk_latency("870.00us"), Some(870));
        assert_eq!(parse_wrk_latency("2.00s"), Some(2_000_000));
        assert_eq!(parse_wrk_latency("?"), None);
    }

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

    /// A run of `server` with only the fields the round logic reads set.
    fn run_of(server: &str, rps: f64, p99_us: u64) -> RunResult {
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

    #[test]
    fn rounds_rotate_the_server_order() {
        let v = ['A', 'B', 'C'];
        assert_eq!(rotated(&v, 0), ['A', 'B', 'C']);
        assert_eq!(rotated(&v, 1), ['B', 'C', 'A']);
        assert_eq!(rotated(&v, 2), ['C', 'A', 'B']);
        assert_eq!(rotated(&v, 4), ['B', 'C', 'A']);
        assert!(rotated::<char>(&[], 3).is_empty());
        assert_eq!(unique(&[64, 1, 64, 16, 1]), [64, 1, 16]);
    }

    #[test]
    fn median_round_is_reported_with_every_round() {
        // odd: the middle rps, whichever round it was
        let r = median_round(vec![
            run_of("s", 100.0, 10),
            run_of("s", 300.0, 30),
            run_of("s", 200.0, 20),
        ])
        .unwrap();
        assert_eq!((r.rps, r.p99_us), (200.0, 20));
        assert_eq!(r.round_rps, [100.0, 300.0, 200.0]);
        assert_eq!(r.round_p99_us, [10, 30, 20]);
        // even: the lower middle
        let r = median_round(vec![
            run_of("s", 400.0, 40),
            run_of("s", 100.0, 10),
            run_of("s", 300.0, 30),
            run_of("s", 200.0, 20),
        ])
        .unwrap();
        assert_eq!((r.rps, r.p99_us), (200.0, 20));
        assert_eq!(r.round_rps, [400.0, 100.0, 300.0, 200.0]);
        // one round, and none
        let r = median_round(vec![run_of("s", 5.0, 1)]).unwrap();
        assert_eq!((r.rps, r.round_rps.as_slice()), (5.0, &[5.0][..]));
        assert!(median_round(Vec::new()).is_none());
    }

    #[test]
    fn paired_ratios_are_per_round() {
        // odd: ratios 0.8, 1.0, 0.9 (same round paired, not sorted values)
        let p = paired_ratio(&[80.0, 100.0, 90.0], &[100.0, 100.0, 100.0]).unwrap();
        assert_eq!((p.median, p.min, p.max, p.pairs), (0.9, 0.8, 1.0, 3));
        // even: the mean of the two middle ratios 0.5, 1.0, 2.0, 4.0
        let p = paired_ratio(&[1.0, 2.0, 4.0, 8.0], &[2.0, 2.0, 2.0, 2.0]).unwrap();
        assert_eq!((p.median, p.min, p.max, p.pairs), (1.5, 0.5, 4.0, 4));
        // a zero denominator is skipped; a round missing on one side too
        let p = paired_ratio(&[50.0, 70.0, 60.0], &[0.0, 100.0]).unwrap();
        assert_eq!((p.median, p.pairs), (0.7, 1));
        assert!(paired_ratio(&[1.0], &[0.0]).is_none());
        assert!(paired_ratio(&[], &[]).is_none());
    }

    #[test]
    fn spread_of_rounds() {
        assert_eq!(spread_pct(&[90.0, 100.0, 110.0], 100.0), Some(10.0));
        assert_eq!(spread_pct(&[100.0], 100.0), None);
        assert_eq!(spread_pct(&[0.0, 0.0], 0.0), None);
    }

    /// The tables show the median round ± spread and median same-round ratios.
    #[test]
    fn markdown_rounds_and_paired_ratios() {
        let with_rounds = |server: &str, rps: &[f64], p99: &[u64]| {
            let rounds = rps
                .iter()
                .zip(p99)
                .map(|(&r, &p)| run_of(server, r, p))
                .collect();
            median_round(rounds).unwrap()
        };
        let report = |rounds, runs| Report {
            meta: Meta {
                date: "d".into(),
                machine: "m".into(),
                git_rev: "g".into(),
                threads: 4,
                client_threads: 1,
                duration_s: 1.0,
                warmup_s: 0.5,
                rounds,
                servers: BTreeMap::new(),
                command: "c".into(),
            },
            runs,
            idle: Vec::new(),
            uploads: Vec::new(),
            errors: Vec::new(),
        };
        let md = markdown(
            &report(
                3,
                vec![
                    with_rounds("bare-hyper", &[100.0, 90.0, 110.0], &[1000, 1000, 2000]),
                    with_rounds("host-c", &[90.0, 90.0, 88.0], &[1100, 900, 2000]),
                ],
            ),
            &[],
            None,
        );
        assert!(md.contains("3 interleaved rounds"), "{md}");
        assert!(md.contains("| bare-hyper | 100 ±10% (1.00ms) |"), "{md}");
        assert!(md.contains("| host-c | 90 ±1% (1.10ms) |"), "{md}");
        // ratios 0.90, 1.00, 0.80; p99 ratios 1.10, 0.90, 1.00
        assert!(
            md.contains("| host-c / bare-hyper (target ≥ 0.9×) | 0.90× (0.80–1.00; p99 1.00×) |"),
            "{md}"
        );
        let md = markdown(
            &report(
                1,
                vec![
                    with_rounds("bare-hyper", &[100.0], &[1000]),
                    with_rounds("host-c", &[93.0], &[910]),
                ],
            ),
            &[],
            None,
        );
        assert!(md.contains("| host-c | 93 (910µs) |"), "{md}");
        assert!(md.contains("| 0.93× (p99 0.91×) |"), "{md}");
    }

    /// The hot-loop client reads every framing exactly and keeps pipelined bytes.
    #[test]
    fn raw_client_framings() {
        let rt = single_threaded_runtime().unwrap();
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let answers: [&[u8]; 4] = [
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n8\r\n, world!\r\n0\r\nT: v\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited",
                ];
                for a in answers {
                    let _ = s.read(&mut buf).await.unwrap();
                    s.write_all(a).await.unwrap();
                }
            });
            let mut c = AsyncConn::connect(addr).await.unwrap();
            let req = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
            let a = exchange(&mut c, req, false).await.unwrap();
            assert_eq!((a.status, a.body_len, a.head.as_slice(), a.closing), (200, 13, &b"Hello, world!"[..], false));
            let a = exchange(&mut c, req, false).await.unwrap();
            assert_eq!((a.body_len, a.head.as_slice()), (13, &b"Hello, world!"[..]));
            let a = exchange(&mut c, req, true).await.unwrap();
            assert_eq!(a.body_len, 0);
            let a = exchange(&mut c, req, false).await.unwrap();
            assert_eq!((a.body_len, a.closing), (15, true));
        });
    }

    /// The load is spread over the client's threads: with two threads and five
    /// connections, all five connect and every request is counted once.
    #[test]
    fn drive_runs_every_connection_on_the_client_threads() {
        use std::sync::atomic::AtomicUsize;
        let accepted = Arc::new(AtomicUsize::new(0));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let rt = single_threaded_runtime().unwrap();
            rt.block_on(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let (mut s, _) = l.accept().await.unwrap();
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        // Every GET head ends in a blank line: one answer each.
                        while let Ok(n @ 1..) = s.read(&mut buf).await {
                            let heads = buf[..n].windows(4).filter(|w| w == b"\r\n\r\n").count();
                            let answer =
                                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
                            for _ in 0..heads {
                                if s.write_all(answer).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        });
        let client = Client::new(2).unwrap();
        let now = Instant::now();
        let mut ticks = 0;
        let (hist, shared) = client.drive(
            addr,
            App::Hello,
            5,
            now,
            now + Duration::from_millis(500),
            |_| ticks += 1,
        );
        assert_eq!(accepted.load(Ordering::Relaxed), 5);
        assert!(!hist.is_empty());
        assert_eq!(hist.len(), shared.done.load(Ordering::Relaxed));
        assert_eq!(shared.errors_io.load(Ordering::Relaxed), 0);
        assert_eq!(shared.errors_body.load(Ordering::Relaxed), 0);
        assert_eq!(shared.reconnects.load(Ordering::Relaxed), 0);
        assert!(ticks >= 2, "{ticks}");
    }

    /// End to end against the bare hyper server (run in-process on a thread):
    /// every workload gets valid responses.
    #[test]
    fn load_against_bare_hyper() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        std::thread::spawn(move || {
            let _ = crate::bare::serve(crate::bare::BareArgs {
                bind: addr,
                threads: 1,
            });
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "bare server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let hist = rt.block_on(async {
            let shared = Arc::new(Shared::default());
            let mut hs = Vec::new();
            for app in [
                App::Hello,
                App::Echo10k,
                App::Stream,
                App::Upload1m,
                App::Body1m,
            ] {
                let now = Instant::now();
                let req = Arc::new(serialize_request(app));
                let h = worker(
                    app,
                    addr,
                    req,
                    now,
                    now + Duration::from_millis(300),
                    shared.clone(),
                )
                .await;
                hs.push(h.len());
            }
            assert_eq!(shared.errors_body.load(Ordering::Relaxed), 0);
            assert_eq!(shared.errors_status.load(Ordering::Relaxed), 0);
            assert_eq!(shared.errors_io.load(Ordering::Relaxed), 0);
            hs
        });
        assert!(hist.iter().all(|&n| n > 0), "{hist:?}");
    }
}
