//! Interpreters: the main one and sub-interpreters (own GIL on 3.12+, or sharing the main
//! GIL), each server thread's lasting thread state in each, entering and leaving, and
//! ending them in order.
//!
//! The rules this follows (see `reference/subinterpreters.md`):
//! - an own-GIL interpreter is made with `use_main_obmalloc = 0` and
//!   `check_multi_interp_extensions = 1`, from a thread with no current thread state (so
//!   that the 3.12.1 failure path, which forgets to re-take the caller's GIL, has no GIL to
//!   forget);
//! - a thread enters an interpreter with `PyEval_RestoreThread(its thread state)` and leaves
//!   with `PyEval_SaveThread()`; `PyGILState_*` are never used to pick an interpreter;
//! - every thread state a thread made for a sub-interpreter is cleared and deleted, and the
//!   interpreter ended with its own thread state current, before anything else happens.
//!
//! How pyo3 fits in: inside [`Interpreter::enter`] the closure runs under `Python::attach`,
//! so that pyo3's attach count is right and objects are dropped at once, in their own
//! interpreter (never deferred to a process-wide pool). `Python::attach` calls
//! `PyGILState_Ensure`, which must then find the thread state that is current:
//! - on 3.12 and later, activating a thread state binds it as the thread's "GIL state"
//!   one, so restoring the interpreter's own thread state first is enough;
//! - before 3.12 the binding never moves from the thread's first (main) thread state, and
//!   every interpreter shares the one GIL: the thread attaches to the main interpreter and
//!   then swaps to the sub-interpreter's thread state for the closure.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::Python;
use pyo3::ffi;

/// How an interpreter shares the GIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The main interpreter.
    Main,
    /// A sub-interpreter sharing the main GIL (`Py_NewInterpreter`).
    Shared,
    /// A sub-interpreter with its own GIL (3.12+).
    Isolated,
}

/// Whether this Python has own-GIL sub-interpreters (PEP 684: 3.12 and later).
pub(crate) const OWN_GIL: bool = cfg!(Py_3_12);

/// Whether an app that names no mode runs isolated: from 3.13, whose standard library
/// loads in own-GIL interpreters (on 3.12 `_datetime`, `_decimal`, `pyexpat` and `_ctypes`
/// refuse, so that Django and Flask cannot start there).
pub(crate) const ISOLATED_BY_DEFAULT: bool = cfg!(Py_3_13);

/// A thread state pointer, owned by this module's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tstate(NonNull<ffi::PyThreadState>);

// SAFETY: a thread state is only used by one thread at a time: the thread it was made for,
// or (at the end) the thread ending its interpreter once requests have drained. The pointer
// itself may move between threads.
unsafe impl Send for Tstate {}

thread_local! {
    /// This thread's lasting thread states, by interpreter key (0 is the main interpreter).
    static STATES: RefCell<Vec<(u64, Tstate)>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread is inside [`Interpreter::enter`] (no nesting).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
const MAIN_KEY: u64 = 0;

/// Why an interpreter could not be entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnterError {
    /// The interpreter was ended (after `TerminateExtension`).
    Ended,
    /// The thread is already inside an interpreter.
    Nested,
    /// Python could not make a thread state.
    NoThreadState,
}

impl std::fmt::Display for EnterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ended => "the interpreter has been ended",
            Self::Nested => "this thread is already inside an interpreter",
            Self::NoThreadState => "Python could not create a thread state",
        })
    }
}

/// One interpreter: the main one or a sub-interpreter, with the thread states made for it.
/// Enter it with [`Interpreter::enter`]; end a sub-interpreter with [`Interpreter::end`].
#[derive(Debug)]
pub(crate) struct Interpreter {
    key: u64,
    kind: Kind,
    id: i64,
    raw: RawInterp,
    /// Every thread state made for this (sub-)interpreter, for [`Interpreter::end`].
    threads: Mutex<Vec<Tstate>>,
    ended: AtomicBool,
}

#[derive(Debug)]
struct RawInterp(NonNull<ffi::PyInterpreterState>);

// SAFETY: an interpreter state lives until it is ended, is only used through the C API with
// one of its thread states current, and may be named from any thread.
unsafe impl Send for RawInterp {}
// SAFETY: as above; the handle itself is never mutated.
unsafe impl Sync for RawInterp {}

/// Leaves the entered interpreter when dropped, even when the closure panics.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        // SAFETY: created right after this thread restored a thread state and took its
        // GIL; the thread state is still current (the closures swap back before returning
        // or unwinding), so it can be saved.
        unsafe { ffi::PyEval_SaveThread() };
        INSIDE.set(false);
    }
}

/// Swaps back to a thread state when dropped (the pre-3.12 path of [`Interpreter::enter`]).
#[cfg(not(Py_3_12))]
struct SwapBack(*mut ffi::PyThreadState);

#[cfg(not(Py_3_12))]
impl Drop for SwapBack {
    fn drop(&mut self) {
        // SAFETY: the GIL (one for all interpreters before 3.12) is held; the saved thread
        // state is this thread's main one, which was current before the swap.
        unsafe { ffi::PyThreadState_Swap(self.0) };
    }
}

/// This thread's main-interpreter thread state, made once (through `PyGILState_Ensure`, so
/// that it is also the thread's "GIL state" one, as pyo3 expects). Called without any
/// thread state current, before any sub-interpreter thread state is made on this thread.
fn main_tstate() -> Result<Tstate, EnterError> {
    if let Some(t) = lookup(MAIN_KEY) {
        return Ok(t);
    }
    // SAFETY: Python is initialised (an Interpreter exists only then) and this thread has
    // no current thread state (callers are outside `enter`). Ensure makes or finds the
    // thread's main thread state and takes the main GIL; SaveThread releases it and
    // returns that thread state, whose use count stays at one, so it lasts.
    let t = unsafe {
        ffi::PyGILState_Ensure();
        ffi::PyEval_SaveThread()
    };
    let t = Tstate(NonNull::new(t).ok_or(EnterError::NoThreadState)?);
    STATES.with_borrow_mut(|s| s.push((MAIN_KEY, t)));
    Ok(t)
}

fn lookup(key: u64) -> Option<Tstate> {
    STATES.with_borrow(|s| s.iter().find(|(k, _)| *k == key).map(|(_, t)| *t))
}

/// The message of a failed `PyStatus`.
#[cfg(Py_3_12)]
fn status_message(status: &ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: err_msg is a static NUL-terminated string from CPython.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Interpreter {
    /// The main interpreter (Python must be running).
    pub(crate) fn main() -> Self {
        // SAFETY: Python is initialised; the main interpreter state lives as long as the
        // process (pyisapie never finalises Python).
        let raw = unsafe { ffi::PyInterpreterState_Main() };
        let raw = NonNull::new(raw).expect("the main interpreter exists once Python runs");
        Self {
            key: MAIN_KEY,
            kind: Kind::Main,
            id: 0,
            raw: RawInterp(raw),
            threads: Mutex::new(Vec::new()),
            ended: AtomicBool::new(false),
        }
    }

    /// Creates a sub-interpreter (`Shared` or `Isolated`; `Main` is [`Interpreter::main`]).
    /// Call outside [`Interpreter::enter`]. An `Isolated` one needs Python 3.12+.
    pub(crate) fn create(kind: Kind) -> Result<Self, String> {
        if INSIDE.get() {
            return Err(EnterError::Nested.to_string());
        }
        let main = main_tstate().map_err(|e| e.to_string())?;
        let t = match kind {
            Kind::Main => return Ok(Self::main()),
            Kind::Shared => {
                // SAFETY: this thread has no current thread state; restoring its main one
                // takes the main GIL, as Py_NewInterpreter requires.
                unsafe { ffi::PyEval_RestoreThread(main.0.as_ptr()) };
                // SAFETY: the main GIL is held with a main thread state current. On
                // success the new interpreter's thread state is current (sharing the GIL);
                // on failure the main one is current again.
                let t = unsafe { ffi::Py_NewInterpreter() };
                // SAFETY: a thread state is current (the new one or the main one), with
                // the GIL; this releases it, leaving no thread state current.
                unsafe { ffi::PyEval_SaveThread() };
                NonNull::new(t).ok_or("Py_NewInterpreter failed (see the standard error)")?
            }
            Kind::Isolated => Self::create_own_gil()?,
        };
        // SAFETY: `t` is a live thread state of the new interpreter; reading its interpreter
        // and that interpreter's id needs no GIL.
        let (raw, id) = unsafe {
            let raw = ffi::PyThreadState_GetInterpreter(t.as_ptr());
            (raw, ffi::PyInterpreterState_GetID(raw))
        };
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let t = Tstate(t);
        STATES.with_borrow_mut(|s| s.push((key, t)));
        Ok(Self {
            key,
            kind,
            id,
            raw: RawInterp(NonNull::new(raw).ok_or("a thread state without an interpreter")?),
            threads: Mutex::new(vec![t]),
            ended: AtomicBool::new(false),
        })
    }

    #[cfg(Py_3_12)]
    fn create_own_gil() -> Result<NonNull<ffi::PyThreadState>, String> {
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 1,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut t = std::ptr::null_mut();
        // SAFETY: no thread state is current on this thread (so a failure has no caller's
        // GIL to re-take, which 3.12.1 would get wrong); `config` and `t` are valid for the
        // call. On success the new thread state is current and holds the new interpreter's
        // own GIL.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut t, &config) };
        // SAFETY: PyStatus_Exception only inspects the value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 || t.is_null() {
            return Err(format!(
                "cannot create an own-GIL sub-interpreter: {}",
                status_message(&status)
            ));
        }
        // SAFETY: the new thread state is current with its GIL; release both.
        unsafe { ffi::PyEval_SaveThread() };
        Ok(NonNull::new(t).expect("checked above"))
    }

    #[cfg(not(Py_3_12))]
    fn create_own_gil() -> Result<NonNull<ffi::PyThreadState>, String> {
        Err("own-GIL sub-interpreters need Python 3.12 or later".to_owned())
    }

    /// How this interpreter shares the GIL.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Python's id of this interpreter (0 for the main one).
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// This thread's lasting thread state in this interpreter, made on first use.
    fn own_tstate(&self) -> Result<Tstate, EnterError> {
        if let Some(t) = lookup(self.key) {
            return Ok(t);
        }
        // SAFETY: the interpreter is alive (not ended: checked by the callers);
        // PyThreadState_New needs no GIL. This thread already has its main thread state
        // (made first by `main_tstate`), so the new one does not become its "GIL state"
        // thread state before 3.12.
        let t = unsafe { ffi::PyThreadState_New(self.raw.0.as_ptr()) };
        let t = Tstate(NonNull::new(t).ok_or(EnterError::NoThreadState)?);
        STATES.with_borrow_mut(|s| s.push((self.key, t)));
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(t);
        Ok(t)
    }

    /// Runs `f` inside this interpreter on the calling thread, with its GIL held, and
    /// leaves it afterwards (also when `f` panics). Not re-entrant: a thread is inside one
    /// interpreter at a time.
    pub(crate) fn enter<R>(&self, f: impl FnOnce(Python<'_>) -> R) -> Result<R, EnterError> {
        if self.ended.load(Ordering::Acquire) {
            return Err(EnterError::Ended);
        }
        if INSIDE.get() {
            return Err(EnterError::Nested);
        }
        let main = main_tstate()?;
        let own = match self.kind {
            Kind::Main => main,
            _ => self.own_tstate()?,
        };
        INSIDE.set(true);
        #[cfg(Py_3_12)]
        {
            // SAFETY: no thread state is current on this thread (not inside, checked);
            // `own` is this thread's lasting thread state for this live interpreter.
            unsafe { ffi::PyEval_RestoreThread(own.0.as_ptr()) };
            let _leave = Leave;
            Ok(Python::attach(f))
        }
        #[cfg(not(Py_3_12))]
        {
            // SAFETY: as above, with this thread's main thread state.
            unsafe { ffi::PyEval_RestoreThread(main.0.as_ptr()) };
            let _leave = Leave;
            Ok(Python::attach(|py| {
                if own == main {
                    return f(py);
                }
                // SAFETY: the one GIL is held; `own` belongs to this thread and to a
                // sub-interpreter that shares that GIL.
                let previous = unsafe { ffi::PyThreadState_Swap(own.0.as_ptr()) };
                let _back = SwapBack(previous);
                f(py)
            }))
        }
    }

    /// Ends this sub-interpreter: runs `last` inside it (flushing its streams), deletes the
    /// thread states other threads made for it, and calls `Py_EndInterpreter` with this
    /// thread's own thread state current. Afterwards [`Interpreter::enter`] fails. Call once
    /// requests have drained (no other thread inside it); does nothing for the main
    /// interpreter, which is never finalised.
    pub(crate) fn end(&self, last: impl FnOnce(Python<'_>)) -> Result<(), EnterError> {
        if self.kind == Kind::Main || self.ended.load(Ordering::Acquire) {
            return Ok(());
        }
        if INSIDE.get() {
            return Err(EnterError::Nested);
        }
        let main = main_tstate()?;
        let own = self.own_tstate()?;
        self.ended.store(true, Ordering::Release);
        let others: Vec<Tstate> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .filter(|t| *t != own)
                .collect();
        let finish = || {
            for t in &others {
                // SAFETY: the interpreter's GIL is held with its thread state `own`
                // current; `t` is another thread state of the same interpreter, not
                // current anywhere (requests have drained), and never used again: the
                // `ended` flag stops every later `enter`.
                unsafe {
                    ffi::PyThreadState_Clear(t.0.as_ptr());
                    ffi::PyThreadState_Delete(t.0.as_ptr());
                }
            }
            // SAFETY: `own` is current, holds the GIL, runs no Python frame, and is the
            // interpreter's last thread state. Afterwards no thread state is current.
            unsafe { ffi::Py_EndInterpreter(own.0.as_ptr()) };
        };
        #[cfg(Py_3_12)]
        {
            let _ = main;
            // SAFETY: no thread state is current; `own` is this thread's for this live
            // interpreter.
            unsafe { ffi::PyEval_RestoreThread(own.0.as_ptr()) };
            Python::attach(last);
            // Py_EndInterpreter leaves no thread state current and the GIL released.
            finish();
        }
        #[cfg(not(Py_3_12))]
        {
            // SAFETY: as in `enter`: the main thread state, then a swap to `own`.
            unsafe { ffi::PyEval_RestoreThread(main.0.as_ptr()) };
            let _leave = Leave;
            Python::attach(|py| {
                // SAFETY: as in `enter`.
                unsafe { ffi::PyThreadState_Swap(own.0.as_ptr()) };
                last(py);
                finish();
                // SAFETY: before 3.12, Py_EndInterpreter leaves the (one) GIL held with no
                // thread state current; make the main one current again, as `_leave` and
                // pyo3's release expect.
                unsafe { ffi::PyThreadState_Swap(main.0.as_ptr()) };
            });
        }
        STATES.with_borrow_mut(|s| s.retain(|(k, _)| *k != self.key));
        Ok(())
    }
}
