//! The interpreter: starting it once from a `PyConfig` (each server thread's lasting
//! thread states are [`super::interp`]'s), the per-interpreter dictionary, and latin-1 strings for the
//! environ.

use std::ffi::CStr;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

#[derive(Debug, Clone, Copy)]
pub(crate) struct PythonSettings<'a> {
    /// `-O` level.
    pub(crate) optimize: u8,
    /// `sys.dont_write_bytecode` is the negation.
    pub(crate) write_bytecode: bool,
    /// `PyConfig.home` (`PYTHONHOME`), when set.
    pub(crate) home: Option<&'a std::path::Path>,
}

/// Starts the interpreter once for the process (from a `PyConfig`, with Python's signal
/// handlers and C stdio configuration left alone, since we are a guest in the server
/// process) and releases the GIL. Returns `Ok(false)` if Python was already running.
pub(crate) fn initialize_python(settings: PythonSettings<'_>) -> Result<bool, String> {
    use pyo3::ffi;
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(false);
    }
    #[cfg(windows)]
    for note in super::winstdio::hide_unusable_std_handles() {
        tracing::warn!(target: "pyisapie", "{note}");
    }
    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig fully initialises the struct it is given.
    unsafe { ffi::PyConfig_InitPythonConfig(config.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let mut config = unsafe { config.assume_init() };
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.configure_c_stdio = 0;
    config.optimization_level = i32::from(settings.optimize);
    config.write_bytecode = i32::from(settings.write_bytecode);
    if let Some(home) = settings.home {
        let config_ptr = &raw mut config;
        let status = set_home(config_ptr, home)?;
        // SAFETY: PyStatus_Exception only inspects the status value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 {
            // SAFETY: `config` was initialised and is not used again.
            unsafe { ffi::PyConfig_Clear(&mut config) };
            return Err("cannot set python_home".to_owned());
        }
    }
    // SAFETY: `config` is a valid, initialised PyConfig; this is the process's first
    // initialisation (checked above); the config is cleared afterwards in both cases.
    let status = unsafe { ffi::Py_InitializeFromConfig(&config) };
    // SAFETY: `config` was initialised by PyConfig_InitPythonConfig and is not used again.
    unsafe { ffi::PyConfig_Clear(&mut config) };
    // SAFETY: PyStatus_Exception only inspects the status value.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 {
        let message = if status.err_msg.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: err_msg is a static NUL-terminated string from CPython.
            unsafe { CStr::from_ptr(status.err_msg) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(format!("Python failed to start: {message}"));
    }
    // SAFETY: this thread holds the GIL right after initialisation; release it so that
    // server threads can attach. The main thread state stays bound to this thread.
    unsafe { ffi::PyEval_SaveThread() };
    Ok(true)
}

/// Sets `PyConfig.home`: from UTF-16 on Windows (any path), from the path's bytes on Unix
/// (decoded as Python decodes file names).
fn set_home(
    config: *mut pyo3::ffi::PyConfig,
    home: &std::path::Path,
) -> Result<pyo3::ffi::PyStatus, String> {
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        let wide: Vec<u16> = home.as_os_str().encode_wide().chain([0]).collect();
        if wide[..wide.len() - 1].contains(&0) {
            return Err("python_home contains a NUL character".to_owned());
        }
        // SAFETY: `config` points to an initialised PyConfig (raw pointers only, no
        // overlapping references); `wide` is NUL-terminated UTF-16, which is wchar_t on
        // Windows, and only read during the call (PyConfig copies it).
        Ok(unsafe {
            pyo3::ffi::PyConfig_SetString(config, &raw mut (*config).home, wide.as_ptr().cast())
        })
    }
    #[cfg(not(windows))]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = std::ffi::CString::new(home.as_os_str().as_bytes())
            .map_err(|_| "python_home contains a NUL byte".to_owned())?;
        // SAFETY: `config` points to an initialised PyConfig (raw pointers only);
        // `bytes` is NUL-terminated and only read during the call (PyConfig copies it,
        // decoding with the locale encoding, as for any file name).
        Ok(unsafe {
            pyo3::ffi::PyConfig_SetBytesString(config, &raw mut (*config).home, bytes.as_ptr())
        })
    }
}

/// The current interpreter's private dictionary (`PyInterpreterState_GetDict`): the home of
/// per-interpreter state, never shared between interpreters.
pub(crate) fn interpreter_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: we hold the GIL (the `py` token), so the current interpreter exists.
    // GetDict returns a borrowed reference (or NULL without an exception set).
    let dict =
        unsafe { pyo3::ffi::PyInterpreterState_GetDict(pyo3::ffi::PyInterpreterState_Get()) };
    if dict.is_null() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "no per-interpreter dictionary",
        ));
    }
    // SAFETY: `dict` is a valid borrowed reference to a dict, kept alive by the interpreter.
    let any = unsafe { Bound::from_borrowed_ptr(py, dict) };
    Ok(any.cast_into::<PyDict>()?)
}

/// Decodes bytes as latin-1 into a native string (PEP 3333's rule for the environ).
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("string too long"))?;
    // SAFETY: the pointer and length describe a readable buffer; errors=NULL means strict,
    // which latin-1 decoding never triggers. The result is a new reference or NULL with an
    // exception set, which from_owned_ptr_or_err handles.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null()),
        )
    }?;
    // SAFETY: PyUnicode_DecodeLatin1 returns a str.
    Ok(unsafe { obj.cast_into_unchecked::<PyString>() })
}
