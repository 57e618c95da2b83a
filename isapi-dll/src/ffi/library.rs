//! The loaded libraries: this library's own file (where `pyisapie.toml` is looked for),
//! the Python library it loaded, and making libpython's symbols global so that C extension
//! modules import under any host.

#[cfg(unix)]
use std::ffi::CStr;
use std::ffi::c_void;
use std::path::PathBuf;

/// The file of this library (`pyisapie.dll`, `libpyisapie.so`; symbolic links resolved on
/// Unix). In a test executable, the executable itself.
pub(crate) fn library_file() -> Option<PathBuf> {
    let path = module_path(library_file as *const c_void)?;
    #[cfg(unix)]
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Some(path)
}

/// The file of the loaded Python library (`python3XX.dll`, `libpython3.X.so`), for
/// messages: on Windows, Python looks for its standard library relative to it.
pub(crate) fn python_library() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        // A function's address here is the import thunk inside this DLL: ask for the
        // loaded module by the name this library imports instead.
        let name: Vec<u16> = env!("PYISAPIE_LIBPYTHON")
            .encode_utf16()
            .chain([0])
            .collect();
        // SAFETY: `name` is NUL-terminated; GetModuleHandleW only looks up loaded modules
        // and does not change reference counts.
        let module =
            unsafe { windows_sys::Win32::System::LibraryLoader::GetModuleHandleW(name.as_ptr()) };
        if module.is_null() {
            return None;
        }
        module_file(module)
    }
    #[cfg(not(windows))]
    {
        module_path(pyo3::ffi::Py_IsInitialized as *const c_void)
    }
}

/// The file of the loaded module (executable or library) that holds `addr`.
fn module_path(addr: *const c_void) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
        // SAFETY: dladdr only inspects the loaded-object list; `info` is writable.
        let found = unsafe { libc::dladdr(addr, &mut info) };
        if found == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dli_fname) };
        use std::os::unix::ffi::OsStrExt;
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::LibraryLoader::{
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            GetModuleHandleExW,
        };
        let mut module = std::ptr::null_mut();
        // SAFETY: looks up the module containing `addr` without changing its reference
        // count; `module` is writable.
        let ok = unsafe {
            GetModuleHandleExW(
                GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS
                    | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                addr.cast::<u16>(),
                &mut module,
            )
        };
        if ok == 0 {
            return None;
        }
        module_file(module)
    }
}

/// The file of a loaded module.
#[cfg(windows)]
fn module_file(module: windows_sys::Win32::Foundation::HMODULE) -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    let mut buf = vec![0u16; 32768];
    // SAFETY: buf is writable for its length; `module` is a loaded module.
    let n = unsafe {
        windows_sys::Win32::System::LibraryLoader::GetModuleFileNameW(
            module,
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
    } as usize;
    if n == 0 || n >= buf.len() {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_wide(&buf[..n])))
}

#[cfg(unix)]
fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    // SAFETY: Dl_info is a plain C struct of pointers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Re-opens libpython with `RTLD_GLOBAL`, so that C extension modules (`math`, `_json`,
/// ...) resolve their `Py*` symbols even when the host loaded us with `RTLD_LOCAL`.
/// Returns the library path on success.
#[cfg(unix)]
pub(crate) fn promote_libpython() -> Result<String, String> {
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    let addr = pyo3::ffi::Py_IsInitialized as *const c_void;
    // SAFETY: dladdr only inspects the loaded-object list; `info` is writable.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    let mut candidates: Vec<std::ffi::CString> = Vec::new();
    if found != 0 && !info.dli_fname.is_null() {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        candidates.push(unsafe { CStr::from_ptr(info.dli_fname) }.to_owned());
    }
    let built = env!("PYISAPIE_LIBPYTHON");
    if !built.is_empty()
        && let Ok(name) = std::ffi::CString::new(built)
    {
        candidates.push(name);
    }
    for name in &candidates {
        // SAFETY: RTLD_NOLOAD never loads anything new: it only changes the flags of an
        // already loaded object (adding RTLD_GLOBAL) and bumps its reference count, which
        // we deliberately leak so the library stays loaded for the process's life.
        let handle = unsafe {
            libc::dlopen(
                name.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
            )
        };
        if !handle.is_null() {
            return Ok(name.to_string_lossy().into_owned());
        }
    }
    Err(format!(
        "libpython is not loaded as a shared library (tried {candidates:?}); C extension \
         modules may fail to import"
    ))
}

/// On Windows, symbols are resolved per DLL: nothing to do.
#[cfg(not(unix))]
pub(crate) fn promote_libpython() -> Result<String, String> {
    Ok("not needed on this platform".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a test executable the module holding `library_file` is the executable itself; on
    /// Windows this goes through `GetModuleHandleExW` and `GetModuleFileNameW` (run it
    /// under Wine, see `ci/windows.sh`).
    #[test]
    #[cfg_attr(miri, ignore = "dladdr: a foreign call Miri cannot run")]
    fn library_file_is_the_module() {
        let file = library_file().expect("the module's file");
        let exe = std::env::current_exe().unwrap();
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(canonical(&file), canonical(&exe));
    }
}
