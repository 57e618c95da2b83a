#![forbid(unsafe_code)]
//! `isapi-harness`: conformance (`conform`) and load (`bench`) runs against
//! our ISAPI host and peer WSGI servers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use isapi_harness::cases::{self, Fragment};
use isapi_harness::cli::{LaunchArgs, make_env};
use isapi_harness::conform::{self, Outcome, RunOptions};
use isapi_harness::report::{self, ReportMeta};
use isapi_harness::servers::{ServerSpec, Tuning};
use isapi_harness::{bare, bench, machine, smuggle, soak};

#[derive(Parser, Debug)]
#[command(
    name = "isapi-harness",
    version,
    about = "Conformance and benchmark harness for isapi-host"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the conformance cases of fixtures/cases against servers.
    Conform(Box<ConformArgs>),
    /// Load-test servers side by side.
    Bench(Box<bench::BenchArgs>),
    /// Request smuggling: desync cases against the host directly and through nginx/HAProxy.
    Smuggle(Box<smuggle::SmuggleArgs>),
    /// Soak and exhaustion runs: a mixed load, memory and descriptors sampled each second.
    Soak(Box<soak::SoakArgs>),
    /// (internal) The bare hyper server used as the benchmark ceiling.
    #[command(hide = true)]
    ServeBare(bare::BareArgs),
}

#[derive(Args, Debug)]
struct ConformArgs {
    /// Server to test (repeatable): host-py, host-c, host-c-win, host-py-win[-py3XX], gunicorn,
    /// waitress, granian, or cmd:<template with {port}>. A case failed by host-*, or by a cmd:
    /// server, makes the exit status 1 (the peers are reference columns).
    #[arg(long = "server", default_values_t = ["host-py".to_string(), "host-c".to_string()])]
    servers: Vec<String>,
    /// Case directory (default REPO/fixtures/cases).
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Only run cases whose name contains this text (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Fragment every request this way, overriding the cases (whole|lines|bytes|random).
    #[arg(long)]
    fragment: Option<Fragment>,
    /// Multiply every timeout by this factor.
    #[arg(long, default_value_t = 1.0)]
    timeout_scale: f64,
    /// Markdown matrix output (default OUT/conformance.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// JUnit XML output (default OUT/junit.xml).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    /// Print every case result as it completes.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    launch: LaunchArgs,
}

fn run_conform(a: ConformArgs) -> Result<ExitCode> {
    let env = make_env(&a.launch, "conform_app:app", "conform", Tuning::Budget)?;
    let dir = a
        .cases
        .clone()
        .unwrap_or_else(|| env.repo.join("fixtures/cases"));
    let mut all = cases::load_dir(&dir)?;
    if !a.only.is_empty() {
        all.retain(|c| a.only.iter().any(|o| c.name.contains(o.as_str())));
    }
    if a.list {
        for c in &all {
            println!("{:40} {:28} {}", c.name, c.cite, c.description);
        }
        println!("{} cases", all.len());
        return Ok(ExitCode::SUCCESS);
    }
    let specs = ServerSpec::parse_all(&a.servers)?;
    let opts = RunOptions {
        fragment: a.fragment,
        timeout_scale: a.timeout_scale,
    };
    let mut results = Vec::new();
    for spec in &specs {
        eprintln!("conform: {} ({} cases)", spec.label(), all.len());
        let verbose = a.verbose;
        let r = conform::run_server(&env, spec, &all, &opts, |name, o| match o {
            Outcome::Fail(why) => eprintln!("  FAIL {name}: {why}"),
            Outcome::Pass if verbose => eprintln!("  pass {name}"),
            Outcome::NotApplicable(_) if verbose => eprintln!("  n/a  {name}"),
            _ => {}
        });
        if let Some(e) = &r.start_error {
            eprintln!("  {} did not start: {e}", spec.label());
        }
        let (p, f, n) = r.count();
        eprintln!("  {}: {p} pass, {f} fail, {n} n/a", spec.label());
        results.push(r);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let meta = ReportMeta {
        command: format!("isapi-harness {}", args.join(" ")),
        date: machine::utc_now(),
        machine: machine::summary(),
        threads: env.threads,
        fragment: a.fragment.map(|f| f.to_string()),
    };
    let md_path = a
        .markdown
        .clone()
        .unwrap_or_else(|| env.out_dir.join("conformance.md"));
    let junit_path = a
        .junit
        .clone()
        .unwrap_or_else(|| env.out_dir.join("junit.xml"));
    for p in [&md_path, &junit_path] {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
    }
    // keep the section `isapi-harness smuggle --update` writes into the same file
    let old = std::fs::read_to_string(&md_path).unwrap_or_default();
    let md = smuggle::keep_section(&old, &report::markdown(&all, &results, &meta));
    std::fs::write(&md_path, md)?;
    std::fs::write(&junit_path, report::junit(&all, &results)?)?;
    eprintln!("wrote {} and {}", md_path.display(), junit_path.display());
    let failed = results
        .iter()
        .filter(|r| r.spec.must_pass())
        .any(|r| r.results.iter().any(|x| x.outcome.is_fail()));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // servers run in their own process groups: stop them if we are interrupted
    let _ = ctrlc::set_handler(|| {
        isapi_harness::servers::kill_all_groups();
        std::process::exit(130);
    });
    let r = match cli.cmd {
        Cmd::Conform(a) => run_conform(*a),
        Cmd::Bench(a) => bench::run(*a),
        Cmd::Smuggle(a) => smuggle::run(*a),
        Cmd::Soak(a) => soak::run(*a),
        Cmd::ServeBare(a) => bare::serve(a).map(|()| ExitCode::SUCCESS),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isapi-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}
