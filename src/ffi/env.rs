//! The process environment, set before any thread starts.

/// Sets the environment for the WSGI sugar. Must run before any thread starts.
pub(crate) fn set_env_before_threads(vars: &[(&str, std::ffi::OsString)]) {
    for (k, v) in vars {
        // SAFETY: called from `main` before the runtime and pools start, so
        // no other thread reads the environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
}
