//! [`Env`]: where the repository, the host binary, the venv of the peers and
//! the Windows build are, and what every server is launched with; and the C
//! fixtures `host-c` maps.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::spec::{HOST_PY_WIN_PREFIX, ServerSpec, is_py_folder_name};
use crate::fixtures;

/// Everything needed to launch servers.
#[derive(Debug, Clone)]
pub struct Env {
    /// Repository root (holds fixtures/).
    pub repo: PathBuf,
    /// The isapi-host binary (libpyisapie.so is expected next to it).
    pub host_bin: PathBuf,
    /// The virtualenv with gunicorn, waitress and granian.
    pub venv: PathBuf,
    /// Thread budget for every server (1 process, N threads).
    pub threads: usize,
    /// Directory for logs and compiled fixtures.
    pub out_dir: PathBuf,
    /// WSGI module:callable in fixtures/wsgi (conform_app:app or bench_app:app).
    pub wsgi_app: String,
    /// What the servers are launched with besides their address and app.
    pub tuning: Tuning,
    /// The Windows build's layout (`ci/windows.sh`'s `target/windows/out`).
    pub windows_out: PathBuf,
    /// The `py3XX` folder `host-py-win` uses (None: the first one in `windows_out`).
    pub windows_python: Option<String>,
    /// Wine's 64-bit loader, which runs the Windows servers.
    pub wine: PathBuf,
    /// The process to sample for a `url:` server's CPU time and memory (`bench --pid`).
    pub attach_pid: Option<u32>,
}

/// What every server is launched with besides its address, its app and its `@` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The shared thread budget (`--threads`) and nothing else: conformance, smuggling, soak.
    Budget,
    /// The thread budget plus the benchmarks' allowances: backlogs and connection limits
    /// of 2048, a 1 GiB body limit, and no access log (none of the peers writes one by
    /// default).
    Bench,
    /// Each server's own defaults, as a user who sets nothing runs it (`bench --defaults`).
    Defaults,
}

/// `path` as a Windows program under Wine names it: `/a/b` -> `Z:\a\b` (Wine maps
/// the Unix root to drive Z: by default). Relative paths are only re-separated.
pub fn wine_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    let win = s.replace('/', "\\");
    if s.starts_with('/') {
        format!("Z:{win}")
    } else {
        win
    }
}

impl Env {
    /// The files of the `static-10k` workload (`10k.bin`, 10 KiB of the cases'
    /// pattern), written under the output directory; served at `/static/` by the host
    /// (`--static`) and the bare server (`--static-dir`).
    pub fn static_dir(&self) -> Result<PathBuf> {
        let dir = self.out_dir.join("static");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("10k.bin");
        std::fs::write(&file, crate::cases::pattern(10240))
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(dir)
    }

    /// The WSGI fixture directory (`fixtures/wsgi`), every server's working directory.
    pub fn wsgi_dir(&self) -> PathBuf {
        self.repo.join("fixtures/wsgi")
    }

    /// The `py3XX` folder of `windows_out` a `host-py-win*` server runs from.
    pub fn windows_python_dir(&self, spec: &ServerSpec) -> Result<PathBuf> {
        let folder = match spec.name.strip_prefix(HOST_PY_WIN_PREFIX) {
            Some(f) => f.to_owned(),
            None => match &self.windows_python {
                Some(f) => f.clone(),
                None => self
                    .windows_python_folders()
                    .into_iter()
                    .next()
                    .with_context(|| {
                        format!(
                            "no py3XX folder in {} (build it: ci/windows.sh)",
                            self.windows_out.display()
                        )
                    })?,
            },
        };
        Ok(self.windows_out.join(folder))
    }

    /// The `py3XX` folders of `windows_out`, sorted.
    pub fn windows_python_folders(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(&self.windows_out)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| is_py_folder_name(n))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|n| (n.len(), n.clone()));
        found
    }

    /// A PE fixture of `windows_out/fixtures` (`<name>.dll`), if it exists.
    pub fn windows_fixture(&self, name: &str) -> Option<PathBuf> {
        fixtures::prebuilt(&self.windows_out.join("fixtures"), name, true)
    }

    /// `wine64 --version`, for reports.
    fn wine_version(&self) -> String {
        Command::new(&self.wine)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "wine".into())
    }

    pub(super) fn logs_dir(&self) -> PathBuf {
        self.out_dir.join("logs")
    }

    /// Describe a server's launch for reports: version and settings.
    pub fn describe(&self, spec: &ServerSpec) -> String {
        if let Some(url) = spec.name.strip_prefix("url:") {
            return match self.attach_pid {
                Some(pid) => format!("already running at {url} (not started here), process {pid}"),
                None => format!(
                    "already running at {url} (not started here; no --pid: CPU and memory not sampled)"
                ),
            };
        }
        let t = self.threads;
        let bench = |flags: &str| {
            if self.tuning == Tuning::Bench {
                format!(" {flags}")
            } else {
                String::new()
            }
        };
        let mut host_flags = bench("--access-log off --max-body 1073741824");
        if let Some(n) = spec.workers() {
            host_flags.insert_str(0, &format!(" --workers {n}"));
        }
        if spec.single_process() {
            host_flags.insert_str(0, " --no-supervisor");
        }
        for arg in spec.interpreter_args() {
            host_flags.push(' ');
            host_flags.push_str(&arg);
        }
        let w = spec.workers().unwrap_or(1);
        let ver = |p: &str| self.pkg_version(p).unwrap_or_else(|| "?".into());
        if self.tuning == Tuning::Defaults {
            let workers = spec
                .workers()
                .map(|n| format!(" {n} workers"))
                .unwrap_or_default();
            match spec.kind() {
                "host-py" => {
                    return format!(
                        "isapi-host + pyisapie ({}) at its defaults{host_flags}",
                        self.wsgi_app
                    );
                }
                "host-c" => return format!("isapi-host + C hello at its defaults{host_flags}"),
                kind @ ("gunicorn" | "waitress" | "granian") => {
                    let wsgi = if kind == "granian" {
                        " (--interface wsgi)"
                    } else {
                        ""
                    };
                    return format!("{kind} {} at its defaults{wsgi}{workers}", ver(kind));
                }
                _ => {}
            }
        }
        match spec.kind() {
            "host-py" => format!(
                "isapi-host + pyisapie ({}), --threads {t}{host_flags}",
                self.wsgi_app
            ),
            "host-c" => format!(
                "isapi-host + C fixtures (hello, echo, misbehave), --threads {t}{host_flags}"
            ),
            "gunicorn" => format!(
                "gunicorn {} -k gthread -w {w} --threads {t}{}",
                ver("gunicorn"),
                bench("--backlog 2048 --worker-connections 2048")
            ),
            "waitress" => format!(
                "waitress {} --threads={t}{}",
                ver("waitress"),
                bench("--backlog=2048 --connection-limit=2048")
            ),
            "granian" => format!(
                "granian {} --interface wsgi --workers {w} --blocking-threads {t}{}",
                ver("granian"),
                bench("--backlog 2048")
            ),
            "host-c-win" => format!(
                "isapi-host.exe + PE C fixtures (hello, echo, misbehave) under {}, --threads {t}{host_flags}",
                self.wine_version()
            ),
            name if name.starts_with("host-py-win") => {
                let folder = self
                    .windows_python_dir(spec)
                    .ok()
                    .and_then(|d| d.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "?".into());
                format!(
                    "isapi-host.exe + pyisapie.dll ({}) with the embeddable CPython of {folder} under {}, --threads {t}{host_flags}",
                    self.wsgi_app,
                    self.wine_version()
                )
            }
            "bare-hyper" => format!("hyper 1.x in isapi-harness, tokio worker threads {t}"),
            other => other.to_owned(),
        }
    }

    /// Version of a Python package in the venv.
    pub fn pkg_version(&self, pkg: &str) -> Option<String> {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                &format!("import importlib.metadata as m; print(m.version({pkg:?}))"),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Compile `fixtures/isapi-c/<name>.c` into `OUT/isapi-c` (once per process).
pub fn compile_c_fixture(env: &Env, name: &str) -> Result<PathBuf> {
    fixtures::compile(&env.repo.join("fixtures/isapi-c"), name, &env.out_dir, &[])
}

/// Which C fixtures `host-c` has (those that compiled).
pub fn available_c_fixtures(env: &Env) -> Vec<String> {
    ["hello", "echo", "misbehave"]
        .iter()
        .filter(|n| compile_c_fixture(env, n).is_ok())
        .map(|s| (*s).to_owned())
        .collect()
}

/// Which C fixtures a server has: `host-c-win` the PE DLLs of `windows_out`,
/// the others those that compile here.
pub fn available_c_fixtures_for(env: &Env, spec: &ServerSpec) -> Vec<String> {
    if spec.name == "host-c-win" {
        ["hello", "echo", "misbehave"]
            .iter()
            .filter(|n| env.windows_fixture(n).is_some())
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        available_c_fixtures(env)
    }
}

/// Locate the repository root: `--repo`, else the harness's source checkout,
/// else the first ancestor of the current directory holding `fixtures/cases`.
pub fn find_repo(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return p
            .canonicalize()
            .with_context(|| format!("--repo {}", p.display()));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("fixtures/cases").is_dir() {
        return Ok(built.canonicalize()?);
    }
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("fixtures/cases").is_dir() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("cannot find the repository (fixtures/cases); pass --repo");
        }
    }
}

/// Default isapi-host path: next to this executable.
pub fn default_host_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("isapi-host")))
        .unwrap_or_else(|| PathBuf::from("isapi-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wine_paths() {
        assert_eq!(
            wine_path(Path::new("/work/main/fixtures/wsgi")),
            r"Z:\work\main\fixtures\wsgi"
        );
        assert_eq!(wine_path(Path::new("rel/x.dll")), r"rel\x.dll");
    }
}
