//! Interleaved rounds: every workload and concurrency on every running
//! server once per round, the servers in an order rotated by the round, a
//! server that died restarted; and the wrk comparison after them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::BenchArgs;
use super::client::{Client, load};
use super::model::{App, RunResult};
use super::probes::run_wrk;
use super::stats::{median, rotated, unique};
use crate::servers::{self, Env, Running};

/// The runs of one (server index, workload, concurrency), one per round (index = round).
pub(super) type RoundRuns = BTreeMap<(usize, App, usize), Vec<RunResult>>;

/// `a.rounds` interleaved rounds: each round runs every workload and concurrency on every
/// running server that supports it, the servers in an order rotated by the round number.
/// A server that cannot be restarted leaves `running` (its earlier rounds stay).
pub(super) fn interleaved_rounds(
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
pub(super) fn revive<'a>(
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

/// Alternate wrk and this generator on the same server; store both medians.
pub(super) fn compare_wrk(
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
        match run_wrk(srv, r.app, r.concurrency, a.client_threads, a.duration) {
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
