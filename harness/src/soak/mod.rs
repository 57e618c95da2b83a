//! `isapi-harness soak`: a mixed load against the host for a while, its
//! memory and descriptors sampled each second, and (`--exhaust`) the
//! exhaustion checks.
//!
//! The host runs pyisapie with the WSGI fixture app (`conform_app:app`). The
//! soak ([`load`]) passes when no response is unexpectedly wrong, RSS grows
//! by less than 5 % over the last half of the run, and the host's descriptor
//! count falls back to its baseline once the clients have closed
//! ([`sample`]). [`exhaust`] holds the slowloris, `--max-requests` and
//! out-of-descriptors checks.

pub mod exhaust;
pub mod load;
pub mod sample;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cli::{LaunchArgs, make_env};
use crate::machine;
use crate::servers::{self, Env, Running, ServerSpec, Tuning};
use load::Counters;
use sample::Sample;

/// Options of `isapi-harness soak`.
#[derive(Args, Debug)]
pub struct SoakArgs {
    /// How long the load runs (the slowloris phase too, with --exhaust).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Keep-alive client connections of the mixed load.
    #[arg(long, short = 'c', default_value_t = 256)]
    pub connections: usize,
    /// Largest RSS growth over the last half of the run, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub max_rss_growth: f64,
    /// Run the exhaustion checks (slowloris, --max-requests, out of
    /// descriptors) instead of the mixed load.
    #[arg(long)]
    pub exhaust: bool,
    /// Slowloris connections of --exhaust.
    #[arg(long, default_value_t = 5000)]
    pub slowloris: usize,
    /// Seconds between two header lines of each slowloris connection.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub slowloris_interval: Duration,
    /// The normal client's p99 target under slowloris, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub p99_ms: f64,
    /// Write the results as Markdown to this file (default OUT/soak.md or OUT/exhaust.md).
    #[arg(long)]
    pub markdown: Option<std::path::PathBuf>,
    /// Where the host is and how it is launched.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// Starts the host (pyisapie, the WSGI fixture app) with `extra` flags,
/// through `prefix` (e.g. `prlimit ...`) when given.
pub(crate) fn start_host(env: &Env, extra: &str) -> Result<Running> {
    if !env.host_bin.exists() {
        bail!(
            "isapi-host not found at {} (cargo build -p isapi-host -p pyisapie, or --host-bin)",
            env.host_bin.display()
        );
    }
    let spec = ServerSpec::parse(&format!(
        "cmd:'{}' serve --bind 127.0.0.1:{{port}} --app conform_app:app --python-path '{}' --threads {{threads}} {extra}",
        env.host_bin.display(),
        env.wsgi_dir().display()
    ))?;
    servers::start(env, &spec).context("starting the host (pyisapie, conform_app:app)")
}

/// A tokio runtime for the clients: as many workers as CPUs, at most 4.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .enable_all()
        .build()?)
}

/// Runs the soak (or, with `--exhaust`, the exhaustion checks).
pub fn run(a: SoakArgs) -> Result<ExitCode> {
    let sub = if a.exhaust { "exhaust" } else { "soak" };
    let env = make_env(&a.launch, "conform_app:app", sub, Tuning::Budget)?;
    let (ok, md) = if a.exhaust {
        exhaust::run(&env, &a)?
    } else {
        soak(&env, &a)?
    };
    let out = a
        .markdown
        .clone()
        .unwrap_or_else(|| env.out_dir.join(format!("{sub}.md")));
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    print!("{md}");
    eprintln!("wrote {}", out.display());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The command line that was run, for reports.
pub(crate) fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("isapi-harness {}", args.join(" "))
}

fn soak(env: &Env, a: &SoakArgs) -> Result<(bool, String)> {
    if a.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let load_before = load_average();
    let host = start_host(env, "--access-log off")?;
    let pid = host.pid().context("the host's pid")?;
    // the readiness probe's connection is gone once the host notices
    std::thread::sleep(Duration::from_secs(1));
    let baseline = sample::take(pid, Instant::now(), 0);
    eprintln!(
        "soak: host {} (pid {pid}), {} connections for {:?}; baseline RSS {} KiB, {} fds",
        host.addr, a.connections, a.duration, baseline.rss_kib, baseline.fds
    );
    let counters = Arc::new(Counters::default());
    let rt = runtime()?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let tasks: Vec<_> = (0..a.connections)
        .map(|i| rt.spawn(load::client(host.addr, i, deadline, counters.clone())))
        .collect();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = start + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_secs(1);
        let s = sample::take(pid, start, counters.done());
        if samples.len() % 10 == 9 {
            eprintln!(
                "  {:>5.0} s  {:>9} requests  RSS {:>7} KiB  {:>5} fds  {} unexpected",
                s.t,
                s.done,
                s.rss_kib,
                s.fds,
                counters.unexpected.load(Ordering::Relaxed)
            );
        }
        samples.push(s);
    }
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    drop(rt);
    let elapsed = start.elapsed();
    let fds_after = sample::wait_fds(pid, baseline.fds, Duration::from_secs(20));
    let alive = crate::procfs::process_exists(pid);
    let log_tail = host.log_tail(30);
    host.stop();
    let c = &counters;
    let unexpected = c.unexpected.load(Ordering::Relaxed);
    let growth = sample::rss_growth(&samples);
    let rss_ok = growth.is_some_and(|(_, _, pct)| pct < a.max_rss_growth);
    let fds_ok = fds_after <= baseline.fds;
    let pass = unexpected == 0 && rss_ok && fds_ok && alive;
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let done = c.done();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### Soak: {} connections, {:?}\n",
        a.connections, a.duration
    );
    let _ = writeln!(
        md,
        "`{}` on {} ({}); load average before: {}.\n",
        command_line(),
        machine::utc_now(),
        machine::summary(),
        load_before
    );
    let _ = writeln!(md, "| measure | value | verdict |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| requests | {done} in {:.0} s ({:.0}/s), {:.1} GiB of bodies received | |",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        c.bytes_in.load(Ordering::Relaxed) as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(
        md,
        "| expected failures | {} 500s from the raising app, {} connections cut mid-body by the clients | |",
        c.raised.load(Ordering::Relaxed),
        c.cut.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        md,
        "| re-sent on a new connection (idle keep-alive closed by the host) | {} | |",
        c.resent.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        md,
        "| unexpected errors | {unexpected} | {} |",
        verdict(unexpected == 0)
    );
    match growth {
        Some((first, last, pct)) => {
            let _ = writeln!(
                md,
                "| RSS, last half | {first} KiB → {last} KiB ({pct:+.2} %), peak {peak} KiB, baseline {} KiB | {} (< {} %) |",
                baseline.rss_kib,
                verdict(rss_ok),
                a.max_rss_growth
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| RSS, last half | too few samples (run 20 s or more) | FAIL |"
            );
        }
    }
    let _ = writeln!(
        md,
        "| descriptors | baseline {}, peak {peak_fds}, {fds_after} after the clients closed | {} |",
        baseline.fds,
        verdict(fds_ok)
    );
    if !alive {
        let _ = writeln!(md, "| host | exited during the run | FAIL |");
    }
    let samples_txt = c.samples.lock().map(|s| s.clone()).unwrap_or_default();
    if !samples_txt.is_empty() {
        let _ = writeln!(md, "\nFirst unexpected errors:\n");
        for s in samples_txt {
            let _ = writeln!(md, "- {s}");
        }
    }
    if !pass {
        eprintln!("host log tail:\n{log_tail}");
    }
    let _ = writeln!(md, "\nResult: **{}**", if pass { "pass" } else { "FAIL" });
    Ok((pass, md))
}

/// `pass` or `FAIL`.
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "**FAIL**" }
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
