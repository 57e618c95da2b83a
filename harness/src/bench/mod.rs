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

pub mod args;
pub mod client;
pub mod markdown;
pub mod model;
pub mod probes;
pub mod rounds;
pub mod stats;
pub mod svg;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

pub use args::BenchArgs;
pub use model::{App, Report, RunResult};

use crate::cli::make_env;
use crate::machine;
use crate::servers::{self, Env, Running, ServerSpec, Tuning};
use client::Client;
use model::Meta;
use probes::{idle_rss, upload};
use rounds::{compare_wrk, interleaved_rounds, revive};
use stats::{median_round, unique};

/// The servers measured when neither --server nor --url is given.
const DEFAULT_SERVERS: [&str; 6] = [
    "bare-hyper",
    "host-c",
    "host-py",
    "granian",
    "gunicorn",
    "waitress",
];

/// Runs `isapi-harness bench`: starts the servers, measures them in
/// interleaved rounds and the extra probes, and writes JSON, Markdown and SVG.
pub fn run(mut a: BenchArgs) -> Result<ExitCode> {
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let tuning = if a.defaults {
        Tuning::Defaults
    } else {
        Tuning::Bench
    };
    let mut env = make_env(&a.launch, "bench_app:app", "bench", tuning)?;
    if let Some(saved) = &a.from_json {
        let text = std::fs::read_to_string(saved)
            .with_context(|| format!("reading {}", saved.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench report", saved.display()))?;
        write_report(&report, &a, &env)?;
        return Ok(ExitCode::SUCCESS);
    }
    env.attach_pid = a.pid;
    if a.servers.is_empty() && a.url.is_none() {
        a.servers = DEFAULT_SERVERS.map(String::from).to_vec();
    }
    let mut specs = ServerSpec::parse_all(&a.servers)?;
    if let Some(url) = &a.url {
        specs.push(ServerSpec::parse(&format!("url:{url}"))?);
        // The URL is the only workload of a url: server; alone, it is the only one.
        if a.servers.is_empty() {
            a.app.clear();
        }
        a.app.push(App::Url);
    }
    let client = Client::new(a.client_threads)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut report = Report {
        meta: Meta {
            date: machine::utc_now(),
            machine: machine::summary(),
            git_rev: machine::git_rev(&env.repo),
            threads: env.threads,
            defaults: a.defaults,
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
    for srv in running.iter().flatten().filter(|s| s.spec.url().is_none()) {
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
    write_report(&report, &a, &env)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the report as JSON (unless it was read from --from-json), Markdown and SVG charts.
fn write_report(report: &Report, a: &BenchArgs, env: &Env) -> Result<()> {
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
    if a.from_json.is_none() {
        std::fs::write(&json_path, serde_json::to_string_pretty(report)?)?;
    }
    let charts = svg::write_charts(report, &svg_dir)?;
    let md = markdown::markdown(report, &charts, md_path.parent());
    std::fs::File::create(&md_path)?.write_all(md.as_bytes())?;
    eprintln!(
        "wrote {}{}, {} charts in {}",
        if a.from_json.is_none() {
            format!("{} and ", json_path.display())
        } else {
            String::new()
        },
        md_path.display(),
        charts.len(),
        svg_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// `bench --url` measures a server the harness did not start (here the bare
    /// hyper server on a thread of this process) and reports it like any other.
    #[test]
    fn bench_url_measures_a_running_server() {
        let addr = crate::testing::start_bare();
        let out = std::env::temp_dir().join(format!("bench-url-{}", std::process::id()));
        let json = out.join("b.json");
        let url = format!("http://{addr}/hello");
        let (o, j) = (out.to_str().unwrap(), json.to_str().unwrap());
        let pid = std::process::id().to_string();
        let cmd = Cmd::try_parse_from([
            "bench",
            "--url",
            &url,
            "--pid",
            &pid,
            "-d",
            "300ms",
            "--warmup",
            "100ms",
            "--rounds",
            "1",
            "-c",
            "2",
            "--client-threads",
            "1",
            "--out",
            o,
            "--json",
            j,
        ])
        .unwrap();
        assert!(cmd.bench.servers.is_empty());
        run(cmd.bench).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let runs = report["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{report}");
        assert_eq!(runs[0]["app"], "url");
        assert_eq!(runs[0]["server"], format!("url:{url}"));
        assert!(runs[0]["requests"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(runs[0]["errors"]["status"], 0);
        assert_eq!(runs[0]["errors"]["io"], 0);
        assert!(runs[0]["server_rss_kib"].as_u64().unwrap() > 0, "{report}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
