//! The command line of each kind of server.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::env::{Env, Tuning, compile_c_fixture, wine_path};
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
            cmd.args(["serve", "--bind", "127.0.0.1:0"]);
            if env.tuning != Tuning::Defaults {
                cmd.args(["--threads", &t]);
            }
            if env.tuning == Tuning::Bench {
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
            cmd.arg("serve");
            if env.tuning == Tuning::Defaults {
                // A port chosen here, so that the default access log (stdout) goes straight
                // to the log file rather than through the harness.
                let p = free_port()?;
                port = Some(p);
                cmd.arg("--bind").arg(format!("127.0.0.1:{p}"));
            } else {
                cmd.args(["--bind", "127.0.0.1:0", "--threads", &t]);
            }
            if env.tuning == Tuning::Bench {
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
            if env.tuning != Tuning::Defaults {
                // The static-10k workload's file.
                let files = env.static_dir()?;
                cmd.arg("--static")
                    .arg(format!("/static={}", files.display()));
            }
            if spec.kind() == "host-py" {
                if env.tuning == Tuning::Defaults {
                    // as a user runs it, in the app's folder (the working directory)
                    cmd.arg(&env.wsgi_app);
                } else {
                    cmd.args(["--app", &env.wsgi_app, "--python-path"])
                        .arg(env.wsgi_dir());
                }
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
            let defaults = env.tuning == Tuning::Defaults;
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
                "gunicorn" if defaults => {
                    // the sync worker, one process unless @wN
                    cmd.args(["-w", &workers, "-b", &format!("127.0.0.1:{p}")]);
                    cmd.arg(&env.wsgi_app);
                }
                "gunicorn" => {
                    cmd.args(["-k", "gthread", "-w", &workers, "--threads", &t, "-b"]);
                    cmd.arg(format!("127.0.0.1:{p}"));
                    if env.tuning == Tuning::Bench {
                        cmd.args(["--backlog", "2048", "--worker-connections", "2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                "waitress" => {
                    cmd.arg(format!("--listen=127.0.0.1:{p}"));
                    if !defaults {
                        cmd.arg(format!("--threads={t}"));
                    }
                    if env.tuning == Tuning::Bench {
                        // waitress refuses connections beyond connection_limit (default 100)
                        cmd.args(["--backlog=2048", "--connection-limit=2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                _ => {
                    cmd.args(["--interface", "wsgi", "--host", "127.0.0.1", "--port", &ps]);
                    cmd.args(["--workers", &workers]);
                    if !defaults {
                        cmd.args(["--blocking-threads", &t]);
                    }
                    if env.tuning == Tuning::Bench {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// An `Env` whose host binary and peers are empty files in a scratch folder.
    fn env(tuning: Tuning, name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("harness-{name}-{}", std::process::id()));
        let bin = dir.join("venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for exe in ["isapi-host", "gunicorn", "granian", "waitress-serve"] {
            std::fs::write(bin.join(exe), b"").unwrap();
        }
        Env {
            repo: dir.clone(),
            host_bin: bin.join("isapi-host"),
            venv: dir.join("venv"),
            threads: 4,
            out_dir: dir.join("out"),
            wsgi_app: "bench_app:app".into(),
            tuning,
            windows_out: PathBuf::new(),
            windows_python: None,
            wine: PathBuf::new(),
            attach_pid: None,
        }
    }

    /// The arguments `spec` is launched with, the port it gets replaced by `PORT`.
    fn args(env: &Env, spec: &str) -> String {
        let launch = command(env, &ServerSpec::parse(spec).unwrap()).unwrap();
        let line: Vec<String> = launch
            .cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = line.join(" ");
        match launch.port {
            Some(p) => line.replace(&p.to_string(), "PORT"),
            None => line,
        }
    }

    #[test]
    fn defaults_give_each_server_only_its_address_its_app_and_its_workers() {
        let env = env(Tuning::Defaults, "defaults");
        for (spec, want) in [
            ("host-py", "serve --bind 127.0.0.1:PORT bench_app:app"),
            (
                "host-py@w2",
                "serve --bind 127.0.0.1:PORT --workers 2 bench_app:app",
            ),
            ("gunicorn", "-w 1 -b 127.0.0.1:PORT bench_app:app"),
            (
                "granian@w2",
                "--interface wsgi --host 127.0.0.1 --port PORT --workers 2 bench_app:app",
            ),
            ("waitress", "--listen=127.0.0.1:PORT bench_app:app"),
        ] {
            assert_eq!(args(&env, spec), want, "{spec}");
        }
        let _ = std::fs::remove_dir_all(&env.repo);
    }

    #[test]
    fn benchmarks_give_every_server_the_thread_budget_and_the_allowances() {
        let env = env(Tuning::Bench, "bench");
        let host = args(&env, "host-py");
        assert!(
            host.starts_with(
                "serve --bind 127.0.0.1:0 --threads 4 --max-body 1073741824 --access-log off"
            ),
            "{host}"
        );
        assert!(
            host.ends_with(&format!(
                "--app bench_app:app --python-path {}",
                env.wsgi_dir().display()
            )),
            "{host}"
        );
        assert_eq!(
            args(&env, "gunicorn"),
            "-k gthread -w 1 --threads 4 -b 127.0.0.1:PORT --backlog 2048 --worker-connections \
             2048 bench_app:app"
        );
        assert_eq!(
            args(&env, "waitress"),
            "--listen=127.0.0.1:PORT --threads=4 --backlog=2048 --connection-limit=2048 \
             bench_app:app"
        );
        let _ = std::fs::remove_dir_all(&env.repo);
    }
}
