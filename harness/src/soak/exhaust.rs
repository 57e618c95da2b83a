//! `isapi-harness soak --exhaust`: the host at its limits.
//!
//! 1. **Slowloris**: `--slowloris` connections (default 5,000) each send a
//!    request line and then one header line every `--slowloris-interval`,
//!    never finishing their heads (re-opened when the host drops them), while
//!    one normal keep-alive client sends `GET /hello` after `GET /hello`: its
//!    p99 must stay under `--p99-ms`.
//! 2. **`--max-requests`** at its limit: with 4 slow requests in flight and
//!    `--max-requests 4`, every further request gets 503, fast.
//! 3. **Out of descriptors**: the host's `RLIMIT_NOFILE` is lowered (`prlimit
//!    --pid`) to a few above what it uses; connections beyond it wait in the
//!    backlog, the failure is logged once, the host does not spin, the
//!    connections it has are still served, and it accepts again once some
//!    close.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;

use super::{SoakArgs, command_line, load_average, runtime, start_host, verdict};
use crate::machine;
use crate::procfs;
use crate::servers::Env;
use crate::wire::{AsyncConn, Conn};

/// Runs the three checks; returns whether all passed, and the Markdown report.
pub fn run(env: &Env, a: &SoakArgs) -> Result<(bool, String)> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### Exhaustion\n\n`{}` on {} ({}); load average before: {}.\n",
        command_line(),
        machine::utc_now(),
        machine::summary(),
        load_average()
    );
    let _ = writeln!(md, "| check | measured | verdict |\n|---|---|---|");
    let mut ok = true;
    for (name, result) in [
        ("slowloris", slowloris(env, a)),
        ("max-requests", max_requests(env)),
        ("out of descriptors", out_of_fds(env)),
    ] {
        match result {
            Ok((pass, line)) => {
                eprintln!(
                    "exhaust: {name}: {} {line}",
                    if pass { "pass" } else { "FAIL" }
                );
                let _ = writeln!(md, "| {name} | {line} | {} |", verdict(pass));
                ok &= pass;
            }
            Err(e) => {
                eprintln!("exhaust: {name}: error: {e:#}");
                let _ = writeln!(md, "| {name} | error: {e:#} | **FAIL** |");
                ok = false;
            }
        }
    }
    let _ = writeln!(md, "\nResult: **{}**", if ok { "pass" } else { "FAIL" });
    Ok((ok, md))
}

fn millis(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[derive(Default)]
struct Loris {
    open: AtomicUsize,
    peak: AtomicUsize,
    dropped: AtomicU64,
    failed_connects: AtomicU64,
}

/// One slowloris connection, re-opened whenever the host drops it.
async fn loris(addr: SocketAddr, delay: Duration, every: Duration, end: Instant, l: Arc<Loris>) {
    tokio::time::sleep(delay).await;
    let mut n = 0u64;
    while Instant::now() < end {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            l.failed_connects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if s.write_all(b"GET /hello HTTP/1.1\r\nHost: loris.test\r\n")
            .await
            .is_err()
        {
            continue;
        }
        let open = l.open.fetch_add(1, Ordering::Relaxed) + 1;
        l.peak.fetch_max(open, Ordering::Relaxed);
        loop {
            tokio::time::sleep(every).await;
            if Instant::now() >= end {
                break;
            }
            n += 1;
            if s.write_all(format!("X-Loris-{n}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                l.dropped.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        l.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn slowloris(env: &Env, a: &SoakArgs) -> Result<(bool, String)> {
    let host = start_host(env, "--access-log off")?;
    let pid = host.pid().context("the host's pid")?;
    let addr = host.addr;
    let rt = runtime()?;
    let l = Arc::new(Loris::default());
    let ramp = Duration::from_millis(a.slowloris as u64); // 1 ms apart
    let start = Instant::now();
    let end = start + ramp + a.duration;
    for i in 0..a.slowloris {
        let delay = Duration::from_millis(i as u64);
        rt.spawn(loris(addr, delay, a.slowloris_interval, end, l.clone()));
    }
    // the normal client starts once every slowloris connection is open
    let (hist, errors, peak_fds) = rt.block_on(async {
        tokio::time::sleep(ramp + Duration::from_secs(2)).await;
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        let mut errors = 0u64;
        let mut peak_fds = 0usize;
        let mut conn: Option<AsyncConn> = None;
        let mut last_sample = Instant::now();
        while Instant::now() < end {
            let t0 = Instant::now();
            let c = match conn.take() {
                Some(c) => c,
                None => match AsyncConn::connect(addr).await {
                    Ok(c) => c,
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                },
            };
            let mut c = c;
            let r = async {
                c.send(b"GET /hello HTTP/1.1\r\nHost: normal.test\r\n\r\n")
                    .await?;
                c.read_response(false).await
            };
            match tokio::time::timeout(Duration::from_secs(10), r).await {
                Ok(Ok(resp)) if resp.status == 200 => {
                    let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                    if resp.keep_alive_signalled() {
                        conn = Some(c);
                    }
                }
                _ => errors += 1,
            }
            if last_sample.elapsed() > Duration::from_secs(1) {
                peak_fds = peak_fds.max(procfs::tree_fd_count(pid));
                last_sample = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (h, errors, peak_fds)
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    host.stop();
    let peak = l.peak.load(Ordering::Relaxed);
    let p99 = millis(&hist, 0.99);
    let pass = errors == 0 && p99 < a.p99_ms && !hist.is_empty() && peak * 100 >= a.slowloris * 95;
    let line = format!(
        "{} slowloris connections (peak open {peak}, a header line every {:?}; {} dropped by the host's \
         header timeout and re-opened, {} connects failed), host at {peak_fds} fds; normal client: {} requests \
         over {:?}, p50 {:.2} ms, p99 {p99:.2} ms (target < {} ms), p99.9 {:.2} ms, max {:.2} ms, {errors} errors",
        a.slowloris,
        a.slowloris_interval,
        l.dropped.load(Ordering::Relaxed),
        l.failed_connects.load(Ordering::Relaxed),
        hist.len(),
        a.duration,
        millis(&hist, 0.5),
        a.p99_ms,
        millis(&hist, 0.999),
        hist.max() as f64 / 1000.0
    );
    Ok((pass, line))
}

/// `GET path` on a new connection: the status and how long it took.
fn one_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Duration)> {
    let t0 = Instant::now();
    let mut c = Conn::connect(addr)?;
    c.set_read_timeout(Some(timeout))?;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
    let r = c.read_response(false)?;
    Ok((r.status, t0.elapsed()))
}

fn max_requests(env: &Env) -> Result<(bool, String)> {
    // as many requests in flight as the host has threads: all running, none queued
    let limit = env.threads;
    let host = start_host(env, &format!("--access-log off --max-requests {limit}"))?;
    let addr = host.addr;
    let sleepers: Vec<_> = (0..limit)
        .map(|_| {
            std::thread::spawn(move || one_get(addr, "/sleep?ms=5000", Duration::from_secs(30)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut not_503 = Vec::new();
    for _ in 0..100 {
        match one_get(addr, "/hello", Duration::from_secs(10)) {
            Ok((503, t)) => {
                let _ = h.record(t.as_micros().max(1) as u64);
            }
            Ok((s, _)) => not_503.push(s.to_string()),
            Err(e) => not_503.push(format!("{e:#}")),
        }
    }
    let slept: Vec<u16> = sleepers
        .into_iter()
        .filter_map(|t| t.join().ok()?.ok().map(|(s, _)| s))
        .collect();
    let after = one_get(addr, "/hello", Duration::from_secs(10))
        .map(|(s, _)| s)
        .ok();
    host.stop();
    let p99 = millis(&h, 0.99);
    let pass = not_503.is_empty()
        && slept.iter().filter(|s| **s == 200).count() == limit
        && after == Some(200)
        && p99 < 50.0;
    let line = format!(
        "`--max-requests {limit}` with {limit} `/sleep?ms=5000` in flight: {} of 100 further requests got 503 \
         (new connection each; p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms; target p99 < 50 ms){}; the {limit} \
         in flight finished {:?}; afterwards {}",
        h.len(),
        millis(&h, 0.5),
        h.max() as f64 / 1000.0,
        if not_503.is_empty() {
            String::new()
        } else {
            format!(", others: {}", not_503.join(", "))
        },
        slept,
        after
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no answer".into())
    );
    Ok((pass, line))
}

/// Opens a connection and runs `GET /hello` on it; `Ok(conn)` once answered
/// 200 within `wait`, `Err(conn)` when no answer came (still waiting).
fn served(addr: SocketAddr, wait: Duration) -> Result<std::result::Result<Conn, Conn>> {
    let mut c = Conn::connect(addr)?;
    c.set_read_timeout(Some(wait))?;
    c.send(b"GET /hello HTTP/1.1\r\nHost: fd.test\r\n\r\n")?;
    Ok(match c.read_response(false) {
        Ok(r) if r.status == 200 => Ok(c),
        _ => Err(c),
    })
}

fn count_in(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches(needle).count())
        .unwrap_or(0)
}

fn out_of_fds(env: &Env) -> Result<(bool, String)> {
    let host = start_host(
        env,
        "--access-log off --no-supervisor --keepalive-timeout 120",
    )?;
    let pid = host.pid().context("the host's pid")?;
    std::thread::sleep(Duration::from_millis(500));
    let base = procfs::tree_fd_count(pid);
    let limit = base + 12;
    let st = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .context("running prlimit (util-linux)")?;
    if !st.success() {
        bail!("prlimit --pid {pid} --nofile={limit} failed: {st}");
    }
    let addr = host.addr;
    let mut kept = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..24 {
        match served(addr, Duration::from_millis(700))? {
            Ok(c) => kept.push(c),
            Err(c) => waiting.push(c),
        }
    }
    // exhausted: measure the host's CPU for 3 s (a spinning accept loop burns one core)
    let ticks0 = procfs::tree_cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let cpu = (procfs::tree_cpu_ticks(pid) - ticks0) as f64 / procfs::ticks_per_sec();
    let failed_lines = count_in(&host.log, "accept failed");
    // the connections it has are still served
    let mut still = 0;
    for c in &mut kept {
        if c.send(b"GET /hello HTTP/1.1\r\nHost: fd.test\r\n\r\n")
            .is_ok()
            && matches!(c.read_response(false), Ok(r) if r.status == 200)
        {
            still += 1;
        }
    }
    // close half of them: the waiting ones are accepted and answered
    let n_kept = kept.len();
    kept.truncate(n_kept / 2);
    let mut answered = 0;
    for c in &mut waiting {
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        if matches!(c.read_response(false), Ok(r) if r.status == 200) {
            answered += 1;
        }
        if answered >= n_kept - n_kept / 2 {
            break;
        }
    }
    let recovered = count_in(&host.log, "accepting connections again");
    let _ = std::io::stderr().flush();
    drop(kept);
    drop(waiting);
    let alive = procfs::process_exists(pid);
    host.stop();
    let pass = n_kept > 0
        && failed_lines == 1
        && cpu < 0.5
        && still == n_kept
        && answered > 0
        && recovered >= 1
        && alive;
    let line = format!(
        "RLIMIT_NOFILE lowered to {limit} (the host had {base} fds open): {n_kept} connections served, the \
         next ones wait in the backlog; `accept failed` logged {failed_lines} time(s); host CPU over 3 s \
         exhausted {cpu:.2} s; {still}/{n_kept} open connections served again; after {} closed, {answered} \
         waiting connection(s) answered and `accepting connections again` logged {recovered} time(s)",
        n_kept - n_kept / 2
    );
    Ok((pass, line))
}
