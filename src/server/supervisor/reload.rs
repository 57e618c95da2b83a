//! `--reload`, for development (like `gunicorn --reload`): the supervisor
//! watches the app's Python files and the extension libraries (the `notify`
//! crate), and when one changes (is written, replaced, removed, or touched;
//! not when it is only read, as a starting worker does) it logs which and
//! recycles every worker, overlapped, as SIGHUP does. Changes within
//! [`DEBOUNCE`] of each other make one reload.
//!
//! - Python: `*.py` files in each folder of the app's Python path
//!   (`--python-path`, and the working directory, `--chdir`'s or the
//!   current one) and in their subfolders, but for hidden ones,
//!   `__pycache__`, virtualenvs (a `pyvenv.cfg`), `site-packages`,
//!   `node_modules` and `target`; at most [`MAX_DIRS`] folders.
//! - Libraries: each mounted library file (its folder is watched, so that a
//!   rebuilt library, a new file at the same path, is seen too).
//! - A change while workers are still starting may have come after they
//!   read the file: once they are ready, they are recycled too.
//! - A worker started for a change that fails to start (a syntax error) is
//!   not retried: its predecessor keeps serving the code it has, and the
//!   next change tries again. While rapid-fail protection has stopped the
//!   pool, a change restarts it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use super::{Event, Supervisor, Worker};
use crate::config::ServeConfig;

/// Changes closer together than this make one reload.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(100);

/// The running watcher (it stops on drop).
pub(super) struct Watch {
    _watcher: RecommendedWatcher,
    targets: Targets,
}

/// The most folders watched for Python files.
const MAX_DIRS: usize = 4096;

/// Folders never searched for the app's Python files.
const SKIPPED: [&str; 4] = ["__pycache__", "site-packages", "node_modules", "target"];

/// What `--reload` watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Targets {
    /// The Python path's folders.
    py_roots: Vec<PathBuf>,
    /// Folders whose own `*.py` files count: the roots and their subfolders.
    py_dirs: Vec<PathBuf>,
    /// Library files.
    libs: Vec<PathBuf>,
}

impl Targets {
    /// The targets of `cfg`, as absolute paths, relative to `cwd`.
    fn of(cfg: &ServeConfig, cwd: &Path) -> Targets {
        let py = cfg.python.iter().flat_map(|py| &py.python_path);
        Targets::new(
            py.map(|d| cwd.join(d)).collect(),
            cfg.maps.iter().map(|m| cwd.join(&m.path)).collect(),
        )
    }

    /// The Python path `py_roots` and the libraries `libs`.
    fn new(mut py_roots: Vec<PathBuf>, mut libs: Vec<PathBuf>) -> Targets {
        dedup(&mut py_roots);
        dedup(&mut libs);
        Targets {
            py_dirs: python_dirs(&py_roots),
            py_roots,
            libs,
        }
    }

    /// Whether a change to `path` calls for a reload.
    fn wants(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        if self.libs.iter().any(|l| l == path) {
            return true;
        }
        // Editors' swap and lock files (`.#app.py`) are not the app's.
        !name.starts_with('.')
            && name.ends_with(".py")
            && path
                .parent()
                .is_some_and(|d| self.py_dirs.iter().any(|p| p == d))
    }

    /// The folders to watch, each once.
    fn watches(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let libs = self.libs.iter().filter_map(|l| l.parent());
        for d in self.py_dirs.iter().map(PathBuf::as_path).chain(libs) {
            if !out.iter().any(|o| o == d) {
                out.push(d.to_path_buf());
            }
        }
        out
    }
}

/// Removes repeated paths, keeping the first of each.
fn dedup(paths: &mut Vec<PathBuf>) {
    let mut seen = Vec::new();
    paths.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
}

/// The roots and their subfolders that may hold the app's modules
/// (breadth first, at most [`MAX_DIRS`]).
fn python_dirs(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut queue: std::collections::VecDeque<PathBuf> =
        roots.iter().filter(|r| r.is_dir()).cloned().collect();
    while let Some(dir) = queue.pop_front() {
        if out.contains(&dir) {
            continue;
        }
        if out.len() == MAX_DIRS {
            tracing::warn!(
                "--reload: watching only the first {MAX_DIRS} folders of the Python path"
            );
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        out.push(dir);
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir
                && !name.starts_with('.')
                && !SKIPPED.contains(&name.as_ref())
                && !e.path().join("pyvenv.cfg").exists()
            {
                queue.push_back(e.path());
            }
        }
    }
    out
}

impl Watch {
    /// Starts watching what `cfg` serves; changes come as [`Event::Changed`].
    pub(super) fn start(cfg: &ServeConfig, tx: UnboundedSender<Event>) -> anyhow::Result<Watch> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let targets = Targets::of(cfg, &cwd);
        let filter = targets.clone();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(event) => {
                    let written = matches!(
                        event.kind,
                        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                    );
                    let paths: Vec<PathBuf> = event
                        .paths
                        .into_iter()
                        .filter(|p| written && filter.wants(p))
                        .collect();
                    if !paths.is_empty() {
                        let _ = tx.send(Event::Changed(paths));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "--reload: the file watcher failed"),
            })
            .context("--reload: cannot start the file watcher")?;
        for dir in targets.watches() {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("--reload: cannot watch {}", dir.display()))?;
        }
        let watch = Watch {
            _watcher: watcher,
            targets,
        };
        tracing::info!("--reload: watching {}", watch.describe());
        Ok(watch)
    }

    /// What is watched, for the log and `ctl status`.
    pub(super) fn describe(&self) -> String {
        let t = &self.targets;
        let list = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !t.py_roots.is_empty() {
            parts.push(format!(
                "*.py in {} folder(s) under {}",
                t.py_dirs.len(),
                list(&t.py_roots)
            ));
        }
        parts.push(format!("the libraries {}", list(&t.libs)));
        parts.join("; ")
    }
}

impl Supervisor {
    /// Watched files changed: a reload once no change came for [`DEBOUNCE`].
    pub(super) fn note_change(&mut self, paths: Vec<PathBuf>) {
        for p in paths {
            if !self.changed.contains(&p) {
                self.changed.push(p);
            }
        }
        self.change_due = Some(tokio::time::Instant::now() + DEBOUNCE);
    }

    /// The reload: every worker is recycled (or, while rapid-fail protection
    /// holds, the pool restarted).
    pub(super) fn on_change(&mut self) -> anyhow::Result<()> {
        self.change_due = None;
        let paths = std::mem::take(&mut self.changed);
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.responder.is_some() {
            tracing::info!("--reload: {shown} changed");
            return self.restart_pool("--reload");
        }
        tracing::info!("--reload: {shown} changed: recycling every worker");
        if self.workers.values().any(|w| !w.ready && !w.stopping) {
            self.reload_pending = true;
        }
        self.recycle_ready()
    }

    /// Recycles every ready worker for `--reload`.
    fn recycle_ready(&mut self) -> anyhow::Result<()> {
        let ready: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.ready && !w.stopping && !w.succeeded)
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(new) = self.recycle(id, "--reload")?
                && let Some(w) = self.workers.get_mut(&new)
            {
                w.for_reload = true;
            }
        }
        Ok(())
    }

    /// Once no worker is starting, the round a change during start-up asked for.
    pub(super) fn reload_if_pending(&mut self) -> anyhow::Result<()> {
        if !self.reload_pending || self.workers.values().any(|w| !w.ready && !w.stopping) {
            return Ok(());
        }
        self.reload_pending = false;
        tracing::info!(
            "--reload: files changed while workers were starting: recycling them once more"
        );
        self.recycle_ready()
    }

    /// A worker started for a change died before it was ready: true if its
    /// predecessor is there to go on serving (the failure is then no crash).
    pub(super) fn reload_failed(&mut self, id: u64, w: &Worker, cause: &str) -> bool {
        if !w.for_reload || w.ready || w.stopping {
            return false;
        }
        let Some(old) = w.replaces else {
            return false;
        };
        let Some(prev) = self.workers.get_mut(&old) else {
            return false;
        };
        prev.succeeded = false;
        self.reload_pending = false;
        tracing::error!(
            worker = id,
            pid = w.pid,
            "--reload: the new worker failed to start: it {cause} (its error is above); worker {old} goes on serving the code it loaded; save a fix to try again"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn python_path_folders_are_watched_for_py_files() {
        let root = std::env::temp_dir().join(format!("isapi-reload-{}", std::process::id()));
        for d in ["pkg/sub", "venv", ".git", "pkg/__pycache__"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("venv/pyvenv.cfg"), "").unwrap();
        let lib = root.join("libpyisapie.so");
        let t = Targets::new(
            vec![root.clone(), root.join("pkg")],
            vec![lib.clone(), lib.clone()],
        );
        assert!(t.wants(&root.join("app.py")));
        assert!(t.wants(&root.join("pkg/sub/views.py")));
        assert!(t.wants(&lib));
        assert!(!t.wants(&root.join("app.pyc")));
        assert!(!t.wants(&root.join(".#app.py")));
        assert!(!t.wants(&root.join("venv/x.py")));
        assert!(!t.wants(&root.join(".git/x.py")));
        assert!(!t.wants(&root.join("pkg/__pycache__/x.py")));
        assert!(!t.wants(&root.join("libother.so")));
        assert!(!t.wants(Path::new("/elsewhere/app.py")));
        assert_eq!(t.watches().len(), 3, "{:?}", t.watches());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
