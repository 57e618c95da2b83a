//! Where each app runs: the main interpreter, an own sub-interpreter (own GIL or the main
//! one's), or a set of own-GIL replicas; and which replica takes a request.
//!
//! The mount table ([`crate::mount`]) routes a URL to an app; the app's [`Home`] picks the
//! interpreter. Every sub-interpreter is created before any app is imported, so each one's
//! `os.environ` starts from the process's environment, not from what another app set
//! (`os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)`). The unsafe work is in
//! [`crate::ffi::interp`]; this module is safe code.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use pyo3::Python;

use crate::config::{AppSpec, Config, InterpreterMode};
use crate::ffi::interp::{EnterError, ISOLATED_BY_DEFAULT, Interpreter, Kind, OWN_GIL};

/// Where one app runs.
#[derive(Debug)]
pub(crate) enum Home {
    /// The main interpreter; `slot` is the app's index in its context's app list.
    Main { slot: usize },
    /// Own sub-interpreters (one, or several replicas), each holding only this app.
    Own(Replicas),
}

/// Every interpreter of the extension, and each app's home.
#[derive(Debug)]
pub(crate) struct Homes {
    /// The main interpreter.
    pub(crate) main: Interpreter,
    /// By app, in the configuration's (sorted) order.
    pub(crate) apps: Vec<Home>,
}

/// Loads `apps` into the current interpreter with `python_path` (the apps' own folders
/// first) and installs its context; the `InterpreterMode` is the one the apps run in.
pub(crate) type Loader<'a> =
    dyn Fn(Python<'_>, &[&AppSpec], &[PathBuf], InterpreterMode) -> Result<(), String> + 'a;

impl Homes {
    /// Creates the sub-interpreters, then imports every app in its interpreter.
    /// `prepare` runs first in each new sub-interpreter (its standard streams).
    pub(crate) fn start(
        config: &Config,
        prepare: &dyn Fn(Python<'_>) -> Result<(), String>,
        load: &Loader<'_>,
    ) -> Result<Self, String> {
        let python = python_version();
        let modes = config
            .apps
            .iter()
            .map(|app| mode_of(app, &python))
            .collect::<Result<Vec<_>, _>>()?;
        // 1. Every sub-interpreter, before any app code runs.
        let mut pools = Vec::with_capacity(config.apps.len());
        for (app, mode) in config.apps.iter().zip(&modes) {
            let kind = match mode {
                InterpreterMode::Main => {
                    pools.push(None);
                    continue;
                }
                InterpreterMode::Shared => Kind::Shared,
                InterpreterMode::Isolated => Kind::Isolated,
            };
            let mut interps = Vec::with_capacity(app.replicas as usize);
            for _ in 0..app.replicas {
                let interp = Interpreter::create(kind)
                    .map_err(|e| format!("app \"{app}\" (from {}): {e}", config.source))?;
                interp
                    .enter(|py| {
                        py.import("os")
                            .map_err(|_| "cannot import os in a new sub-interpreter".to_owned())?;
                        prepare(py)
                    })
                    .map_err(|e| e.to_string())??;
                interps.push(interp);
            }
            pools.push(Some(interps));
        }
        // 2. The main interpreter's apps.
        let main = Interpreter::main();
        let in_main: Vec<&AppSpec> = config
            .apps
            .iter()
            .zip(&modes)
            .filter(|(_, m)| **m == InterpreterMode::Main)
            .map(|(a, _)| a)
            .collect();
        if !in_main.is_empty() {
            let paths: Vec<PathBuf> = in_main
                .iter()
                .flat_map(|a| a.python_path.iter().cloned())
                .collect();
            main.enter(|py| load(py, &in_main, &paths, InterpreterMode::Main))
                .map_err(|e| e.to_string())??;
        }
        // 3. Each sub-interpreter's app.
        let mut apps = Vec::with_capacity(config.apps.len());
        for (index, ((app, mode), pool)) in config.apps.iter().zip(&modes).zip(pools).enumerate() {
            let Some(interps) = pool else {
                // its place among the main interpreter's apps
                let slot = modes[..index]
                    .iter()
                    .filter(|m| **m == InterpreterMode::Main)
                    .count();
                apps.push(Home::Main { slot });
                continue;
            };
            for interp in &interps {
                interp
                    .enter(|py| load(py, &[app], &app.python_path, *mode))
                    .map_err(|e| e.to_string())??;
            }
            apps.push(Home::Own(Replicas::new(interps)));
        }
        Ok(Self { main, apps })
    }

    /// A line per app for the log: its mode and interpreter ids.
    pub(crate) fn describe(&self, index: usize) -> String {
        match &self.apps[index] {
            Home::Main { .. } => "main interpreter".to_owned(),
            Home::Own(pool) => {
                let ids: Vec<String> = pool.items().iter().map(|i| i.id().to_string()).collect();
                let kind = match pool.items()[0].kind() {
                    Kind::Isolated => "isolated (own GIL)",
                    _ => "shared (main GIL)",
                };
                match ids.len() {
                    1 => format!("{kind} sub-interpreter {}", ids[0]),
                    n => format!("{kind}, {n} replicas: sub-interpreters {}", ids.join(", ")),
                }
            }
        }
    }

    /// Ends every sub-interpreter, in the reverse order of their creation; `last` runs in
    /// each first (flushing its streams). Failures are returned for the log.
    pub(crate) fn end(&self, last: &dyn Fn(Python<'_>)) -> Vec<String> {
        let mut errors = Vec::new();
        for home in self.apps.iter().rev() {
            if let Home::Own(pool) = home {
                for interp in pool.items().iter().rev() {
                    if let Err(e) = interp.end(last) {
                        errors.push(format!("sub-interpreter {}: {e}", interp.id()));
                    }
                }
            }
        }
        errors
    }
}

/// The version of the running Python (`3.12.1`).
pub(crate) fn python_version() -> String {
    Python::version_str()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// The mode an app runs in, checked against this Python.
fn mode_of(app: &AppSpec, python: &str) -> Result<InterpreterMode, String> {
    // replicas without a mode ask for own-GIL interpreters where there are any
    let mode = app.interpreter.unwrap_or(if app.replicas > 1 && OWN_GIL {
        InterpreterMode::Isolated
    } else {
        InterpreterMode::default_for(ISOLATED_BY_DEFAULT)
    });
    if mode == InterpreterMode::Isolated && !OWN_GIL {
        return Err(format!(
            "app \"{app}\" asks for interpreter = \"isolated\" (a sub-interpreter with its own \
             GIL), which needs Python 3.12 or later; this pyisapie runs Python {python}. Set \
             interpreter = \"shared\" (its own sub-interpreter, sharing the main GIL) or \
             \"main\" for this app, or build pyisapie against Python 3.12+"
        ));
    }
    if app.replicas > 1 && mode != InterpreterMode::Isolated {
        return Err(format!(
            "app \"{app}\" has replicas = {}, which needs own-GIL sub-interpreters (Python 3.12 \
             or later); this pyisapie runs Python {python}. Remove replicas, or build \
             pyisapie against Python 3.12+",
            app.replicas
        ));
    }
    Ok(mode)
}

/// The interpreters of one app.
pub(crate) type Replicas = Pool<Interpreter>;

impl Replicas {
    /// Runs `f` in a free replica (waiting for one if all are busy).
    pub(crate) fn run<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> Result<R, EnterError> {
        self.acquire().item().enter(f)
    }
}

/// Interchangeable items (an app's replicas), and which are free. A taker gets a free one
/// (the one this thread used last if it is free, else the lowest); when none is free it
/// waits in line and is handed the next one released, first come first served.
#[derive(Debug)]
pub(crate) struct Pool<T> {
    items: Vec<T>,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    /// Bit `i` set: item `i` is free.
    free: u64,
    /// Takers waiting for an item, oldest first.
    waiting: VecDeque<Arc<Handoff>>,
}

/// Where a released item is handed to a waiting taker.
#[derive(Debug, Default)]
struct Handoff {
    given: Mutex<Option<usize>>,
    ready: Condvar,
}

thread_local! {
    /// The item this thread took last (a hint: its thread state there is warm).
    static LAST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<T> Pool<T> {
    /// A pool of 1 to 64 items, all free.
    pub(crate) fn new(items: Vec<T>) -> Self {
        assert!(!items.is_empty() && items.len() <= 64, "1 to 64 items");
        let free = u64::MAX >> (64 - items.len());
        Self {
            items,
            state: Mutex::new(PoolState {
                free,
                waiting: VecDeque::new(),
            }),
        }
    }

    /// The items, in order.
    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    /// Takes a free item, waiting (without spinning) while none is.
    pub(crate) fn acquire(&self) -> Lease<'_, T> {
        if self.items.len() == 1 {
            // One item: nothing to choose (for an interpreter, its GIL is the queue).
            return Lease {
                pool: self,
                index: 0,
                counted: false,
            };
        }
        let handoff = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.waiting.is_empty() && state.free != 0 {
                let last = LAST.get();
                let index = if last < self.items.len() && state.free & (1 << last) != 0 {
                    last
                } else {
                    state.free.trailing_zeros() as usize
                };
                state.free &= !(1 << index);
                return self.lease(index);
            }
            let handoff = Arc::new(Handoff::default());
            state.waiting.push_back(handoff.clone());
            handoff
        };
        let mut given = handoff.given.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(index) = *given {
                return self.lease(index);
            }
            given = handoff
                .ready
                .wait(given)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lease(&self, index: usize) -> Lease<'_, T> {
        LAST.set(index);
        Lease {
            pool: self,
            index,
            counted: true,
        }
    }

    fn release(&self, index: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.waiting.pop_front() {
            Some(next) => {
                drop(state);
                *next.given.lock().unwrap_or_else(PoisonError::into_inner) = Some(index);
                next.ready.notify_one();
            }
            None => state.free |= 1 << index,
        }
    }
}

/// An item taken from a [`Pool`], given back when dropped.
pub(crate) struct Lease<'p, T> {
    pool: &'p Pool<T>,
    index: usize,
    counted: bool,
}

impl<T> Lease<'_, T> {
    /// The item taken.
    pub(crate) fn item(&self) -> &T {
        &self.pool.items[self.index]
    }

    /// Its index in the pool.
    #[cfg(test)]
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if self.counted {
            self.pool.release(self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_free_item_is_taken_and_given_back() {
        let pool = Pool::new(vec!['a', 'b', 'c']);
        let first = pool.acquire();
        let second = pool.acquire();
        assert_ne!(first.index(), second.index());
        let third = pool.acquire();
        let mut taken = [first.index(), second.index(), third.index()];
        taken.sort_unstable();
        assert_eq!(taken, [0, 1, 2]);
        let freed = second.index();
        drop(second);
        assert_eq!(pool.acquire().index(), freed);
    }

    #[test]
    fn when_all_are_busy_takers_wait_and_are_served_in_order() {
        let pool = Arc::new(Pool::new(vec![(), ()]));
        // both taken; the leases are forgotten and given back by hand below
        let held = [pool.acquire(), pool.acquire()].map(|lease| {
            let index = lease.index();
            std::mem::forget(lease);
            index
        });
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (pool2, order) = (pool.clone(), order.clone());
            waiters.push(std::thread::spawn(move || {
                let lease = pool2.acquire();
                order.lock().unwrap().push(n);
                std::thread::sleep(Duration::from_millis(20));
                drop(lease);
            }));
            // in line before the next one starts
            while pool.state.lock().unwrap().waiting.len() != n + 1 {
                std::thread::yield_now();
            }
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody may run while both are busy"
        );
        pool.release(held[0]);
        pool.release(held[1]);
        for w in waiters {
            w.join().unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 3);
        // the first two in line got the two released items; the third waited for one
        assert_eq!(&order[2], &2, "first come, first served: {order:?}");
        assert_eq!(pool.state.lock().unwrap().free, 0b11);
    }
}
