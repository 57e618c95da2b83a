//! The Markdown report of a benchmark: the run, a table
//! per workload with the ratios the targets are stated in, the wrk
//! comparison, per-run details, idle memory, uploads, charts and problems.

use std::path::PathBuf;

use super::model::{App, Report, RunResult};
use super::stats::{fmt_us, median, paired_ratio, spread_pct};

fn find<'a>(r: &'a Report, server: &str, app: App, c: usize) -> Option<&'a RunResult> {
    r.runs
        .iter()
        .find(|x| x.server == server && x.app == app && x.concurrency == c)
}

/// A section's title, then the header and alignment rows of its table.
fn table_head(s: &mut String, title: &str, header: &str, align: &str) {
    use std::fmt::Write;
    let _ = writeln!(s, "### {title}\n");
    let _ = writeln!(s, "{header}");
    let _ = writeln!(s, "{align}");
}

/// The header's words on the rounds (what a cell and a ratio are is said once, in
/// BENCHMARKS.md's method).
fn rounds_sentence(rounds: usize) -> String {
    if rounds == 1 {
        "one round".into()
    } else {
        format!("{rounds} interleaved rounds, the median one shown")
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
        "Run {} on {} (git {}); {}; {}; {} s measured after \
         {} s warm-up per run; a load generator of {} thread(s). The command and each server's launch are in \
         the JSON report.\n",
        r.meta.date,
        r.meta.machine,
        r.meta.git_rev,
        if r.meta.defaults {
            "every server at its own defaults (only its address and app given)".to_owned()
        } else {
            format!("{} request threads per server process", r.meta.threads)
        },
        rounds_sentence(r.meta.rounds),
        r.meta.duration_s,
        r.meta.warmup_s,
        r.meta.client_threads,
    );
    let mut apps: Vec<App> = r.runs.iter().map(|x| x.app).collect();
    apps.sort();
    apps.dedup();
    let mut concs: Vec<usize> = r.runs.iter().map(|x| x.concurrency).collect();
    concs.sort_unstable();
    concs.dedup();
    for app in &apps {
        let _ = writeln!(
            s,
            "### {} — requests/s (p99 latency · server CPU per request)\n",
            app.name()
        );
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
                        let _ = write!(
                            s,
                            " {:.0}{spread} ({} · {:.1} µs{err}) |",
                            x.rps,
                            fmt_us(x.p99_us),
                            x.server_cpu_ms_per_1k
                        );
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
            // worker processes: a web garden against granian's, and against one worker
            ("host-py@w2", "granian@w2", 1.0),
            ("host-py@w2", "host-py", 1.7),
            // what the supervisor costs: within noise of one process
            ("host-c", "host-c@single", 0.95),
            ("host-py", "host-py@single", 0.95),
            // own-GIL replicas in one process: against one replica, and against granian's
            // two processes
            ("host-py@r2", "host-py@r1", 1.8),
            ("host-py@r2", "granian@w2", 1.0),
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
            let _ = write!(s, "| same-round ratio (min–max; p99 ratio) |");
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
            "| server | workload | c | isapi-harness rps | wrk rps | ratio of medians | harness p99 | wrk p99 |"
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
                "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {} | {} |",
                x.server,
                x.app.name(),
                x.concurrency,
                ours,
                w,
                ours / w.max(1.0),
                fmt_us(x.p99_us),
                x.wrk_p99_us.map(fmt_us).unwrap_or_else(|| "—".into())
            );
        }
        let _ = writeln!(s);
    }
    if !r.runs.is_empty() {
        table_head(
            &mut s,
            "Server memory (resident, all its processes, at the end of its median rounds)",
            "| server | smallest | largest |",
            "|---|---:|---:|",
        );
        for srv in &order {
            let rss: Vec<u64> = r
                .runs
                .iter()
                .filter(|x| &x.server == srv)
                .map(|x| x.server_rss_kib)
                .collect();
            if let (Some(lo), Some(hi)) = (rss.iter().min(), rss.iter().max()) {
                let _ = writeln!(s, "| {srv} | {} MiB | {} MiB |", lo / 1024, hi / 1024);
            }
        }
        let _ = writeln!(s);
    }
    if !r.idle.is_empty() {
        table_head(
            &mut s,
            "Resident memory with idle keep-alive connections",
            "| server | connections asked | established | still open | RSS before | RSS with connections | per connection |",
            "|---|---:|---:|---:|---:|---:|---:|",
        );
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
        table_head(
            &mut s,
            "Chunked upload streamed to /count",
            "| server | size | result | time | throughput | RSS before | RSS peak | growth |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
        );
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
        let _ = write!(s, "Charts:");
        for c in charts {
            let p = rel_to
                .and_then(|base| c.strip_prefix(base).ok())
                .unwrap_or(c.as_path());
            let alt = c
                .file_stem()
                .and_then(|f| f.to_str())
                .map_or("chart", |f| f.strip_prefix("bench-").unwrap_or(f));
            let _ = write!(s, " ![{alt}]({})", p.display());
        }
        let _ = writeln!(s, "\n");
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::model::{Meta, run_of};
    use crate::bench::stats::median_round;

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
                defaults: false,
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
        assert!(
            md.contains("| bare-hyper | 100 ±10% (1.00ms · 0.0 µs) |"),
            "{md}"
        );
        assert!(md.contains("| host-c | 90 ±1% (1.10ms · 0.0 µs) |"), "{md}");
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
        assert!(md.contains("| host-c | 93 (910µs · 0.0 µs) |"), "{md}");
        assert!(md.contains("| 0.93× (p99 0.91×) |"), "{md}");
    }
}
