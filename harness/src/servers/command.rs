//! The command line of each kind of server.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::env::{Env, compile_c_fixture, wine_path};
use super::spec::ServerSpec;

/// URL prefix → C fixture (without `.c`) for `host-c`; everything else goes to `hello`.
pub const HOST_C_MAPS: &[(&str, &str)] = &[
    ("/echo", "echo"),
    ("/count", "echo"),
    ("/short-cl", "misbehave"),
    ("/long-cl", "misbehave"),
    ("/no-headers", "misbehave"),
    ("/error", "misbehave"),
    ("/error-after-headers", "misbehave"),
    ("/bad-chunks", "misbehave"),
    ("/good-chunks", "misbehave"),
];

/// How a server is launched.
pub(super) struct Launch {
    /// The command, with its working directory, environment and process group set.
    pub(super) cmd: Command,
    /// The port it will listen on; `None` when it announces its address on stdout.
    pub(super) port: Option<u16>,
    /// Its stderr must be a pipe (Wine), copied into the log.
    pub(super) pipe_stderr: bool,
}

/// The command that starts `spec`: our host with its flags (Linux or under
/// Wine), a peer from the venv, the bare hyper server, or a `cmd:` template.
pub(super) fn command(env: &Env, spec: &ServerSpec) -> Result<Launch> {
    let t = env.threads.to_string();
    let mut cmd;
    let mut port = None;
    // Wine: stderr must be a pipe, copied into the log by a thread.
    let mut pipe_stderr = false;
    match spec.kind() {
        name if spec.is_windows() => {
            let (exe, is_py) = if name == "host-c-win" {
                (env.windows_out.join("bin").join("isapi-host.exe"), false)
            } else {
                (env.windows_python_dir(spec)?.join("isapi-host.exe"), true)
            };
            if !exe.exists() {
                bail!(
                    "{} not found (build the Windows binaries: ci/windows.sh, or pass --windows-out)",
                    exe.display()
                );
            }
            if !env.wine.exists() {
                bail!(
                    "Wine's loader {} not found (apt-get install wine64, or pass --wine)",
                    env.wine.display()
                );
            }
            cmd = Command::new(&env.wine);
            cmd.arg(&exe);
            cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", &t]);
            if env.bench_mode {
                cmd.args(["--max-body", "1073741824", "--access-log", "off"]);
            }
            if is_py {
                cmd.args(["--app", &env.wsgi_app, "--python-path"])
                    .arg(wine_path(&env.wsgi_dir()));
            } else {
                let hello = env.windows_fixture("hello").with_context(|| {
                    format!(
                        "{} has no fixtures/hello.dll (build it: ci/windows.sh)",
                        env.windows_out.display()
                    )
                })?;
                cmd.arg("--extension").arg(wine_path(&hello));
                for (prefix, fixture) in HOST_C_MAPS {
                    if let Some(lib) = env.windows_fixture(fixture) {
                        cmd.arg("--map")
                            .arg(format!("{prefix}={}", wine_path(&lib)));
                    }
                }
            }
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
            // Quiet, no Mono/Gecko installers, and the prefix ci/windows.sh uses,
            // unless the caller chose otherwise.
            for (k, v) in [
                ("WINEDEBUG", "-all"),
                ("WINEDLLOVERRIDES", "mscoree,mshtml="),
            ] {
                if std::env::var_os(k).is_none() {
                    cmd.env(k, v);
                }
            }
            if std::env::var_os("WINEPREFIX").is_none() {
                cmd.env("WINEPREFIX", env.repo.join("target/windows/wineprefix"));
            }
            pipe_stderr = true;
        }
        "host-py" | "host-c" => {
            if !env.host_bin.exists() {
                bail!(
                    "isapi-host binary not found at {} (build it: cargo build -p isapi-host, or pass --host-bin)",
                    env.host_bin.display()
                );
            }
            cmd = Command::new(&env.host_bin);
            cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", &t]);
            if env.bench_mode {
                // IIS's default request limit (30 MB) would refuse the 100 MiB upload benchmark;
                // waitress's default is 1 GiB, granian and gunicorn have none
                cmd.args(["--max-body", "1073741824"]);
                // like the peers (none writes an access log by default)
                cmd.args(["--access-log", "off"]);
            }
            if let Some(n) = spec.workers() {
                cmd.args(["--workers", &n.to_string()]);
            }
            if spec.single_process() {
                cmd.arg("--no-supervisor");
            }
            // The static-10k workload's file.
            let files = env.static_dir()?;
            cmd.arg("--static")
                .arg(format!("/static={}", files.display()));
            if spec.kind() == "host-py" {
                cmd.args(["--app", &env.wsgi_app, "--python-path"])
                    .arg(env.wsgi_dir());
                cmd.args(spec.interpreter_args());
            } else {
                let hello = compile_c_fixture(env, "hello")?;
                cmd.arg("--extension").arg(&hello);
                for (prefix, fixture) in HOST_C_MAPS {
                    if let Ok(lib) = compile_c_fixture(env, fixture) {
                        cmd.arg("--map").arg(format!("{prefix}={}", lib.display()));
                    }
                }
            }
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        }
        "gunicorn" | "waitress" | "granian" => {
            let p = free_port()?;
            port = Some(p);
            let bin = env.venv.join("bin").join(if spec.kind() == "waitress" {
                "waitress-serve"
            } else {
                spec.kind()
            });
            let workers = spec.workers().unwrap_or(1).to_string();
            if !bin.exists() {
                bail!(
                    "{} not found (install the peers: {}/bin/pip install -r ci/peers-requirements.txt)",
                    bin.display(),
                    env.venv.display()
                );
            }
            cmd = Command::new(&bin);
            let ps = p.to_string();
            match spec.kind() {
                "gunicorn" => {
                    cmd.args(["-k", "gthread", "-w", &workers, "--threads", &t, "-b"]);
                    cmd.arg(format!("127.0.0.1:{p}"));
                    if env.bench_mode {
                        cmd.args(["--backlog", "2048", "--worker-connections", "2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                "waitress" => {
                    cmd.arg(format!("--listen=127.0.0.1:{p}"));
                    cmd.arg(format!("--threads={t}"));
                    if env.bench_mode {
                        // waitress refuses connections beyond connection_limit (default 100)
                        cmd.args(["--backlog=2048", "--connection-limit=2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                _ => {
                    cmd.args(["--interface", "wsgi", "--host", "127.0.0.1", "--port", &ps]);
                    cmd.args(["--workers", &workers, "--blocking-threads", &t]);
                    if env.bench_mode {
                        cmd.args(["--backlog", "2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
            }
        }
        "bare-hyper" => {
            let exe = std::env::current_exe()?;
            cmd = Command::new(exe);
            cmd.args(["serve-bare", "--bind", "127.0.0.1:0", "--threads", &t]);
            cmd.arg("--static-dir").arg(env.static_dir()?);
        }
        other => {
            let template = other.strip_prefix("cmd:").context("unknown server")?;
            let p = free_port()?;
            port = Some(p);
            let line = template
                .replace("{port}", &p.to_string())
                .replace("{app}", &env.wsgi_app)
                .replace("{dir}", &env.wsgi_dir().to_string_lossy())
                .replace("{threads}", &t);
            cmd = Command::new("sh");
            cmd.args(["-c", &format!("exec {line}")]);
        }
    }
    cmd.current_dir(env.wsgi_dir())
        .stdin(Stdio::null())
        .process_group(0);
    // The venv's bin first on PATH (for cmd: templates), and unbuffered Python output.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![env.venv.join("bin")];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?);
    cmd.env("PYTHONUNBUFFERED", "1");
    Ok(Launch {
        cmd,
        port,
        pipe_stderr,
    })
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
