//! `conform`: run the cases against servers over raw TCP and judge the bytes.
//!
//! - [`case`]: one case on one connection ([`run_case`]);
//! - [`check`]: one response against an expectation ([`check_fields`]);
//! - here: every case on one server, started and stopped here ([`run_server`]).

pub mod case;
pub mod check;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use case::{FOLLOW_UP, FOLLOW_UP_BODY, RunOptions, run_case};
pub use check::check_fields;

use crate::cases::{Case, Target};
use crate::servers::{self, Env, ServerSpec};

/// Result of one case on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation held.
    Pass,
    /// Why the case failed.
    Fail(String),
    /// Why the case does not apply to this server.
    NotApplicable(String),
}

impl Outcome {
    /// Whether the case failed.
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
}

/// One case on one server.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub case: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// Every case on one server.
#[derive(Debug, Clone)]
pub struct ServerResult {
    /// The server.
    pub spec: ServerSpec,
    /// How it was launched.
    pub description: String,
    /// Why it did not start, if it did not (every case then fails).
    pub start_error: Option<String>,
    /// One result per case, in case order.
    pub results: Vec<CaseResult>,
}

impl ServerResult {
    /// How many cases passed, failed and did not apply.
    pub fn count(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::NotApplicable(_) => c.2 += 1,
            }
        }
        c
    }
}

/// Run every case against one server (started and stopped here).
pub fn run_server(
    env: &Env,
    spec: &ServerSpec,
    cases: &[Case],
    opts: &RunOptions,
    mut progress: impl FnMut(&str, &Outcome),
) -> ServerResult {
    let description = env.describe(spec);
    let target = spec.target();
    let c_fixtures = if target == Target::Isapi {
        servers::available_c_fixtures_for(env, spec)
    } else {
        Vec::new()
    };
    let mut running = match servers::start(env, spec) {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = format!("{e:#}");
            let results = cases
                .iter()
                .map(|c| CaseResult {
                    case: c.name.clone(),
                    outcome: if c.targets.contains(&target) {
                        Outcome::Fail(format!("server did not start: {}", first_line(&msg)))
                    } else {
                        Outcome::NotApplicable(format!("{target:?} server"))
                    },
                    duration: Duration::ZERO,
                })
                .collect();
            return ServerResult {
                spec: spec.clone(),
                description,
                start_error: Some(msg),
                results,
            };
        }
    };
    let mut results = Vec::new();
    for case in cases {
        let start = Instant::now();
        let outcome = if !case.targets.contains(&target) {
            Outcome::NotApplicable(format!("not applicable to {}", target_label(target)))
        } else if target == Target::Isapi
            && let Some(fx) = &case.isapi_fixture
            && !c_fixtures.contains(fx)
        {
            Outcome::NotApplicable(format!("C fixture {fx}.c not available"))
        } else {
            let Some(srv) = running.as_mut() else {
                results.push(CaseResult {
                    case: case.name.clone(),
                    outcome: Outcome::Fail("server could not be restarted".into()),
                    duration: Duration::ZERO,
                });
                continue;
            };
            let mut outcome = match run_case(case, srv.addr, opts) {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            };
            if !srv.alive() {
                let tail = srv.log_tail(3).replace('\n', " | ");
                let msg = format!("server died during this case (log: {tail})");
                outcome = Outcome::Fail(match outcome {
                    Outcome::Fail(e) => format!("{e}; {msg}"),
                    _ => msg,
                });
                if let Some(old) = running.take() {
                    old.stop();
                }
                running = servers::start(env, spec).ok();
            }
            outcome
        };
        progress(&case.name, &outcome);
        results.push(CaseResult {
            case: case.name.clone(),
            outcome,
            duration: start.elapsed(),
        });
    }
    if let Some(r) = running {
        r.stop();
    }
    ServerResult {
        spec: spec.clone(),
        description,
        start_error: None,
        results,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The servers a case target is for, in words.
pub fn target_label(t: Target) -> &'static str {
    match t {
        Target::Wsgi => "WSGI servers",
        Target::Isapi => "the C ISAPI fixtures",
    }
}
