//! The load generator: keep-alive connections on single-threaded tokio
//! runtimes, each sending one pre-serialised request after another and
//! validating every response, read with the harness's async reader
//! ([`AsyncConn`]) into a sink that keeps only what is checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::model::{App, Errors, RunResult};
use super::stats::fmt_us;
use crate::procfs;
use crate::servers::Running;
use crate::wire::{AsyncConn, Framing, Head, ReadOptions, Sink, WireError};

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
        if !app.valid_status(answer.status) {
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
pub(super) fn single_threaded_runtime() -> std::io::Result<tokio::runtime::Runtime> {
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

    /// Runs `conns` connections sending `request` (of `app`) to `addr` until the `window` ends, dealt out
    /// evenly over the threads, and merges their histograms (requests sent
    /// from the `window`'s start on) and counters. Meanwhile calls `tick` on this
    /// thread every 200 ms.
    fn drive(
        &self,
        addr: SocketAddr,
        app: App,
        request: Vec<u8>,
        conns: usize,
        window: std::ops::Range<Instant>,
        mut tick: impl FnMut(&Shared),
    ) -> (Histogram<u64>, Arc<Shared>) {
        let std::ops::Range {
            start: measure_from,
            end,
        } = window;
        let shared = Arc::new(Shared::default());
        let request = Arc::new(request);
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
    let cpu_ticks = || cpu_pid.map_or(0, procfs::tree_cpu_ticks);
    let mut cpu_before = None;
    let (mut last, mut last_t) = (0, Instant::now());
    let request = app.request(&srv.spec).to_bytes();
    let (hist, shared) = client.drive(addr, app, request, conns, measure_from..end, |shared| {
        if cpu_before.is_none() && Instant::now() >= measure_from {
            cpu_before = Some(cpu_ticks());
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
    let cpu_after = cpu_ticks();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::ServerSpec;

    /// The hot-loop client reads every framing exactly and keeps pipelined bytes.
    #[test]
    fn raw_client_framings() {
        let rt = single_threaded_runtime().unwrap();
        rt.block_on(async {
            let addr = crate::testing::spawn_framing_server().await;
            let mut c = AsyncConn::connect(addr).await.unwrap();
            let req = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
            let a = exchange(&mut c, req, false).await.unwrap();
            assert_eq!(
                (a.status, a.body_len, a.head.as_slice(), a.closing),
                (200, 13, &b"Hello, world!"[..], false)
            );
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
        let hello = App::Hello.request(&ServerSpec::parse("host-c").unwrap());
        let (hist, shared) = client.drive(
            addr,
            App::Hello,
            hello.to_bytes(),
            5,
            now..now + Duration::from_millis(500),
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
        let addr = crate::testing::start_bare();
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
                let spec = ServerSpec::parse("bare-hyper").unwrap();
                let req = Arc::new(app.request(&spec).to_bytes());
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
