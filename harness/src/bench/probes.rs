//! Measurements beside the load runs: wrk on the same server and workload,
//! resident memory with idle keep-alive connections, and a large chunked
//! upload with the server's memory sampled meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::client::single_threaded_runtime;
use super::model::{App, IdleResult, UploadResult};
use crate::procfs;
use crate::servers::Running;

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

/// Run wrk against the same server and workload; returns (rps, p99 µs).
pub fn run_wrk(
    srv: &Running,
    app: App,
    conns: usize,
    threads: usize,
    duration: Duration,
) -> Result<(f64, Option<u64>)> {
    let request = app.request(&srv.spec);
    if request.method != "GET" {
        bail!("wrk comparison only for GET workloads");
    }
    let out = std::process::Command::new("wrk")
        .arg(format!("-t{}", threads.min(conns).max(1)))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .args(["-H", &format!("Host: {}", request.host)])
        .arg(format!("http://{}{}", srv.addr, request.path))
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
        let after = srv.rss_kib();
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
                peak.fetch_max(pid.map_or(0, procfs::tree_rss_kib), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latency_units() {
        assert_eq!(parse_wrk_latency("1.23ms"), Some(1230));
        assert_eq!(parse_wrk_latency("870.00us"), Some(870));
        assert_eq!(parse_wrk_latency("2.00s"), Some(2_000_000));
        assert_eq!(parse_wrk_latency("?"), None);
    }
}
