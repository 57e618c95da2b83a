//! Command-line pieces shared by `conform` and `bench`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::servers::{self, Env, Tuning};

/// Options for locating and launching servers.
#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Repository root (default: the checkout the harness was built from, or an ancestor of the cwd).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// isapi-host binary (default: next to this executable; libpyisapie.so must be next to it).
    #[arg(long)]
    pub host_bin: Option<PathBuf>,
    /// Virtualenv holding gunicorn, waitress and granian (default REPO/.venv).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// Thread budget of every server: 1 process with N request threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Directory for logs, compiled C fixtures and reports (default REPO/target/SUBCOMMAND).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The Windows build for host-c-win and host-py-win* (default REPO/target/windows/out,
    /// as ci/windows.sh lays it out: bin/, fixtures/, py3XX/).
    #[arg(long)]
    pub windows_out: Option<PathBuf>,
    /// The py3XX folder of --windows-out that host-py-win runs (default: the first one).
    #[arg(long)]
    pub windows_python: Option<String>,
    /// Wine's 64-bit loader, which runs the Windows servers.
    #[arg(long, default_value = "/usr/lib/wine/wine64")]
    pub wine: PathBuf,
}

/// Build the launch environment. `sub` names the default output directory.
pub fn make_env(l: &LaunchArgs, wsgi_app: &str, sub: &str, tuning: Tuning) -> Result<Env> {
    let repo = servers::find_repo(l.repo.as_deref())?;
    let host_bin = l.host_bin.clone().unwrap_or_else(servers::default_host_bin);
    let venv = l.venv.clone().unwrap_or_else(|| repo.join(".venv"));
    let out_dir = l
        .out
        .clone()
        .unwrap_or_else(|| repo.join("target").join(sub));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // servers run with the WSGI fixture directory as their cwd: make every path absolute
    let out_dir = out_dir.canonicalize()?;
    let host_bin = if host_bin.is_relative() && host_bin.components().count() > 1 {
        std::env::current_dir()?.join(host_bin)
    } else {
        host_bin
    };
    let venv = if venv.is_relative() {
        std::env::current_dir()?.join(venv)
    } else {
        venv
    };
    let windows_out = match &l.windows_out {
        Some(p) if p.is_relative() => std::env::current_dir()?.join(p),
        Some(p) => p.clone(),
        None => repo.join("target").join("windows").join("out"),
    };
    if l.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(Env {
        repo,
        host_bin,
        venv,
        threads: l.threads,
        out_dir,
        wsgi_app: wsgi_app.to_owned(),
        tuning,
        windows_out,
        windows_python: l.windows_python.clone(),
        wine: l.wine.clone(),
        attach_pid: None,
    })
}
