//! Start-up and shutdown: the settings resolved, the WSGI sugar's
//! environment, each extension loaded once and mounted, the runtime and the
//! thread pools built; after the listener stops, `TerminateExtension`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::listener::{self, Listen};
use super::routing::{App, Mount};
use crate::config::{ServeArgs, ServeConfig};
use crate::ffi::{self, Extension};
use crate::pool::{Pool, RuntimeWait};
use crate::shared::Shared;

/// The file name of the workspace's pyisapie library on this platform.
fn pyisapie_file_name() -> String {
    format!(
        "{}pyisapie{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A start-up error whose message is already on stderr (pyisapie says why
/// an app did not start): the process exits with status 1 and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("start-up failed (the reason is above)")]
pub(crate) struct AlreadyReported;

/// Where the library at `path` was configured: `--extension`, `ISAPI_HOST_MAP`, ...
fn origin<'a>(cfg: &'a ServeConfig, path: &Path) -> &'a str {
    cfg.lib_origins
        .iter()
        .find(|(p, _)| p == path)
        .map_or("the settings", |(_, o)| o.as_str())
}

/// Fails, naming where it was configured, for a library given with a folder
/// that does not exist; a bare name is left to the system loader's search.
fn check_libraries(cfg: &ServeConfig, pyisapie: &Path) -> anyhow::Result<()> {
    for m in &cfg.maps {
        if m.path != pyisapie && m.path.components().count() > 1 && !m.path.exists() {
            anyhow::bail!(
                "the extension library {} (from {}) does not exist",
                m.path.display(),
                origin(cfg, &m.path)
            );
        }
    }
    Ok(())
}

/// Fails if the WSGI sugar needs the pyisapie library and it is not built.
fn check_pyisapie(cfg: &ServeConfig, pyisapie: &Path) -> anyhow::Result<()> {
    if cfg.python.is_some() && cfg.maps.iter().any(|m| m.path == pyisapie) && !pyisapie.exists() {
        anyhow::bail!(
            "the pyisapie library is not built: {} is missing (run `cargo build --release --workspace`, or pass --extension)",
            pyisapie.display()
        );
    }
    Ok(())
}

/// Runs `isapi-host serve` until SIGINT or SIGTERM: a supervisor and its
/// workers (Unix, by default), a worker (started by the supervisor), or one
/// process that does it all (`--no-supervisor`).
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let pyisapie = exe_dir.join(pyisapie_file_name());
    let demo_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("wsgi");
    let cfg = ServeConfig::resolve(args, &pyisapie, &demo_dir)?;
    crate::logging::set_format(cfg.log_format);

    #[cfg(unix)]
    let worker = std::env::var_os(crate::os::WORKER_ENV).is_some();
    #[cfg(not(unix))]
    let worker = false;
    // The web.config's warnings, once: by the supervisor or the lone process.
    if !worker {
        for w in &cfg.site.warnings {
            tracing::warn!("{w}");
        }
    }
    check_libraries(&cfg, &pyisapie)?;
    // The access log's file is checked (and a W3C log on stdout gets its
    // header) once: by the supervisor or the lone process.
    if !worker {
        crate::accesslog::announce(&cfg)?;
    }
    #[cfg(unix)]
    if cfg.supervisor && !worker {
        check_pyisapie(&cfg, &pyisapie)?;
        return super::supervisor::run(cfg);
    }
    // The supervisor stays where it started; each worker (or the one
    // process) moves, so that every worker starts from the same place.
    if let Some(dir) = &cfg.chdir {
        std::env::set_current_dir(dir)
            .with_context(|| format!("cannot change to the directory {}", dir.display()))?;
    }
    crate::accesslog::open(&cfg)?;
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut recycle: Option<crate::shared::Recycle> = None;
    let listen = if worker {
        #[cfg(unix)]
        {
            let crate::os::WorkerDescriptors {
                listener,
                control,
                slots,
                garden,
            } = crate::os::worker_descriptors()
                .context("cannot take the descriptors the supervisor handed down")?;
            crate::os::inflight::install(&slots).context("cannot map the in-flight table")?;
            let garden = super::balance::Garden::map(&garden)?;
            if let Some(after) = cfg.recycle_requests {
                let ask = control.try_clone()?;
                recycle = Some(crate::shared::Recycle::new(
                    after,
                    Box::new(move || {
                        use std::io::Write as _;
                        tracing::info!(requests = after, "asking the supervisor for a successor");
                        let _ = (&ask).write_all(b"recycle\n");
                    }),
                ));
            }
            Listen::Inherited(listener, control, garden)
        }
        #[cfg(not(unix))]
        unreachable!()
    } else {
        Listen::Bind
    };

    if let Some(py) = &cfg.python {
        check_pyisapie(&cfg, &pyisapie)?;
        let path = std::env::join_paths(&py.python_path)
            .context("--python-path holds a path separator")?;
        let mut vars = vec![
            ("PYISAPIE_APP", py.app.clone().into()),
            ("PYISAPIE_APP_SOURCE", py.source.clone().into()),
            ("PYISAPIE_PYTHONPATH", path),
        ];
        if let Some(mode) = py.interpreter {
            vars.push(("PYISAPIE_INTERPRETER", mode.name().into()));
        }
        if let Some(n) = py.replicas {
            vars.push(("PYISAPIE_REPLICAS", n.to_string().into()));
        }
        ffi::set_env_before_threads(&vars);
    }

    // Each library is loaded once, however many prefixes it serves.
    let mut loaded: HashMap<PathBuf, Arc<Extension>> = HashMap::new();
    let mut mounts = Vec::new();
    for m in &cfg.maps {
        let ext = match loaded.get(&m.path) {
            Some(ext) => ext.clone(),
            None => {
                let ext = Extension::load(&m.path).map_err(|e| {
                    if e.is_refused() && cfg.python.is_some() && m.path == pyisapie {
                        // pyisapie said why (the app's error, once): no ISAPI words on top.
                        anyhow::Error::new(AlreadyReported)
                    } else {
                        e.with_origin(origin(&cfg, &m.path)).into()
                    }
                })?;
                let ext = Arc::new(ext);
                loaded.insert(m.path.clone(), ext.clone());
                ext
            }
        };
        let prefix = url_prefix::shown(&m.prefix);
        tracing::info!(prefix, extension = %m.path.display(), "mounted");
        mounts.push(Mount {
            script_name: m.prefix.as_str().into(),
            ext,
        });
    }
    let mut statics = Vec::new();
    for m in &cfg.site.statics {
        let prefix = url_prefix::shown(&m.prefix);
        let directory = m.dir.display();
        // At the same prefix the extension takes every request (IIS: a
        // handler mapping for `*` before the static file handler).
        if cfg.maps.iter().any(|x| x.prefix == m.prefix) {
            tracing::info!(prefix, %directory, "static files not served: an extension is mounted there");
            continue;
        }
        tracing::info!(prefix, %directory, "static files");
        statics.push(Arc::new(crate::site::files::StaticFiles::new(m)));
    }

    let wait = Arc::new(RuntimeWait::new(cfg.yield_time));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.io_threads)
        .enable_all()
        .thread_name("isapi-http")
        .on_thread_park({
            let wait = wait.clone();
            move || wait.parking()
        })
        .on_thread_unpark({
            let wait = wait.clone();
            move || wait.unparked()
        })
        .build()?;
    let _ = wait.metrics.set(rt.metrics());
    let workers = Pool::new("isapi-worker", cfg.threads, cfg.parallel, cfg.yield_time)?;
    let io = Pool::new(
        "isapi-io",
        cfg.threads.clamp(4, 64),
        crate::pool::cpu_share(cfg.workers),
        cfg.yield_time,
    )?;
    let shared = Arc::new(Shared::new(cfg, rt.handle().clone(), io).with_recycle(recycle));
    let app = Arc::new(App {
        shared: shared.clone(),
        workers,
        mounts,
        statics,
    });
    rt.block_on(listener::serve(app, listen))?;

    // TerminateExtension(MUST_UNLOAD) promises that no request runs any more.
    let still_running = shared.active();
    if still_running == 0 {
        for ext in loaded.values() {
            ext.terminate();
        }
    } else {
        tracing::warn!(
            requests = still_running,
            "requests still inside extensions: not calling TerminateExtension"
        );
    }
    // Extension threads may still be parked in the pools; do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    // Every request's line is out before the process exits.
    crate::accesslog::flush();
    Ok(())
}
