//! Windows: standard handles that CPython cannot use are hidden from it before it starts.
//!
//! CPython builds `sys.stdin`, `sys.stdout` and `sys.stderr` from its C runtime's
//! descriptors 0, 1 and 2, and there is no setting to stop it. A descriptor with no handle
//! behind it (IIS's w3wp has no standard handles) gives `None`, which pyisapie then
//! replaces by its log writers. But a handle of a disk file on which
//! `GetFileInformationByHandle` fails makes `Py_InitializeFromConfig` abort ("can't
//! initialize sys standard streams", `OSError: [WinError 6]`): Wine 8 does that for a
//! standard handle that is a regular file on the Unix side (`isapi-host.exe > log`), and
//! `python.exe` itself dies there the same way.
//!
//! For such a handle only, [`hide_unusable_std_handles`] points the descriptor in
//! Python's C runtime (the UCRT, `ucrtbase.dll`) at the `NUL` device instead (never
//! leaving it free: the next file Python opens would take it, and C code writing to
//! `stderr` would write into that file), and gives the process a duplicate of the handle
//! as its standard handle, so that the server's own output (Rust's std looks the standard
//! handle up at each write) still reaches the same file. Every other handle is left
//! alone.

use std::ffi::CStr;

use windows_sys::Win32::Foundation::{
    CloseHandle, DUPLICATE_SAME_ACCESS, DuplicateHandle, GetHandleInformation, GetLastError,
    HANDLE, HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateFileW, FILE_GENERIC_READ, FILE_GENERIC_WRITE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_TYPE_DISK, GetFileInformationByHandle, GetFileType,
    OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, SetStdHandle,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

type GetOsfHandle = unsafe extern "C" fn(i32) -> isize;
type Close = unsafe extern "C" fn(i32) -> i32;
type OpenOsfHandle = unsafe extern "C" fn(isize, i32) -> i32;
type Dup2 = unsafe extern "C" fn(i32, i32) -> i32;
type InvalidParameterHandler =
    Option<unsafe extern "C" fn(*const u16, *const u16, *const u16, u32, usize)>;
type SetInvalidParameterHandler =
    unsafe extern "C" fn(InvalidParameterHandler) -> InvalidParameterHandler;

/// The UCRT's invalid-parameter handler for our calls: do nothing (the call then fails
/// with `EBADF`), instead of the default, which ends the process.
unsafe extern "C" fn ignore_invalid_parameter(
    _expression: *const u16,
    _function: *const u16,
    _file: *const u16,
    _line: u32,
    _reserved: usize,
) {
}

/// The UCRT functions used here, looked up in the loaded `ucrtbase.dll`.
struct Ucrt {
    get_osfhandle: GetOsfHandle,
    close: Close,
    open_osfhandle: OpenOsfHandle,
    dup2: Dup2,
    set_thread_local_iph: SetInvalidParameterHandler,
}

impl Ucrt {
    fn find() -> Option<Self> {
        let name: Vec<u16> = "ucrtbase.dll\0".encode_utf16().collect();
        // SAFETY: `name` is NUL-terminated; GetModuleHandleW only looks up loaded modules
        // and does not change reference counts.
        let module = unsafe { GetModuleHandleW(name.as_ptr()) };
        if module.is_null() {
            return None;
        }
        let find = |symbol: &CStr| {
            // SAFETY: `module` is a loaded module and `symbol` is NUL-terminated.
            unsafe { GetProcAddress(module, symbol.as_ptr().cast()) }
        };
        let get_osfhandle = find(c"_get_osfhandle")?;
        let close = find(c"_close")?;
        let open_osfhandle = find(c"_open_osfhandle")?;
        let dup2 = find(c"_dup2")?;
        let set_iph = find(c"_set_thread_local_invalid_parameter_handler")?;
        // SAFETY: these UCRT exports have exactly these C signatures (corecrt_io.h,
        // stdlib.h); "C" and "system" are the same calling convention on x86-64, and the
        // UCRT stays loaded while python3XX.dll, which imports it, is.
        unsafe {
            Some(Self {
                get_osfhandle: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    GetOsfHandle,
                >(get_osfhandle),
                close: std::mem::transmute::<unsafe extern "system" fn() -> isize, Close>(close),
                open_osfhandle: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    OpenOsfHandle,
                >(open_osfhandle),
                dup2: std::mem::transmute::<unsafe extern "system" fn() -> isize, Dup2>(dup2),
                set_thread_local_iph: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    SetInvalidParameterHandler,
                >(set_iph),
            })
        }
    }
}

/// Whether CPython's `fstat` fails on `handle` (a disk file whose information Windows does
/// not give); returns the Win32 error then.
fn unusable_disk_file(handle: HANDLE) -> Option<u32> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: GetFileType only queries the handle; any value is allowed.
    if unsafe { GetFileType(handle) } != FILE_TYPE_DISK {
        return None;
    }
    // SAFETY: all-zero is a valid BY_HANDLE_FILE_INFORMATION (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is writable; the call only queries the handle.
    if unsafe { GetFileInformationByHandle(handle, &mut info) } != 0 {
        return None;
    }
    // SAFETY: reads this thread's last-error value.
    Some(unsafe { GetLastError() })
}

/// A new UCRT descriptor on the `NUL` device.
fn open_nul(crt: &Ucrt) -> Result<i32, String> {
    let name: Vec<u16> = "NUL\0".encode_utf16().collect();
    // SAFETY: `name` is NUL-terminated; the other arguments are plain values.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            FILE_GENERIC_READ | FILE_GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        // SAFETY: reads this thread's last-error value.
        return Err(format!("cannot open NUL (error {})", unsafe {
            GetLastError()
        }));
    }
    // SAFETY: hands the handle we just opened to the UCRT, which owns it from now on.
    let fd = unsafe { (crt.open_osfhandle)(handle as isize, 0) };
    if fd < 0 {
        // SAFETY: the UCRT did not take the handle: close it.
        unsafe { CloseHandle(handle) };
        return Err("_open_osfhandle failed for NUL".to_owned());
    }
    Ok(fd)
}

/// Hides from CPython each standard handle it would abort on (see the module docs).
/// Returns a message for the log about each one hidden. Call it before Python starts.
pub(crate) fn hide_unusable_std_handles() -> Vec<String> {
    const STREAMS: [(i32, STD_HANDLE, &str); 3] = [
        (0, STD_INPUT_HANDLE, "stdin"),
        (1, STD_OUTPUT_HANDLE, "stdout"),
        (2, STD_ERROR_HANDLE, "stderr"),
    ];
    let mut notes = Vec::new();
    let mut ucrt = None;
    for (fd, which, name) in STREAMS {
        // SAFETY: GetStdHandle only reads the process's standard handle.
        let handle = unsafe { GetStdHandle(which) };
        let Some(error) = unusable_disk_file(handle) else {
            continue;
        };
        if ucrt.is_none() {
            ucrt = Ucrt::find();
        }
        let Some(crt) = &ucrt else {
            notes.push(format!(
                "the process's {name} is a file Windows gives no information on (error \
                 {error}); ucrtbase.dll is not loaded, so it is left alone"
            ));
            continue;
        };
        match hide(crt, fd, which, handle) {
            Ok(()) => notes.push(format!(
                "the process's {name} is a file Windows gives no information on \
                 (GetFileInformationByHandle: error {error}), on which Python could not \
                 start: Python's descriptor {fd} now refers to NUL, and the process's \
                 {name} is a duplicate handle of the same file"
            )),
            Err(why) => notes.push(format!(
                "the process's {name} is a file Windows gives no information on (error \
                 {error}) and was left alone: {why}"
            )),
        }
    }
    notes
}

fn hide(crt: &Ucrt, fd: i32, which: STD_HANDLE, handle: HANDLE) -> Result<(), String> {
    // SAFETY: installs a handler for this thread only; restored below.
    let previous = unsafe { (crt.set_thread_local_iph)(Some(ignore_invalid_parameter)) };
    let result = (|| {
        // SAFETY: with the handler above, an unknown descriptor returns -1 instead of
        // ending the process.
        let crt_handle = unsafe { (crt.get_osfhandle)(fd) };
        if crt_handle != handle as isize {
            return Err(format!(
                "Python's descriptor {fd} is another handle ({crt_handle:#x})"
            ));
        }
        let mut flags = 0u32;
        // SAFETY: queries the handle's flags into a local.
        let inherit = unsafe { GetHandleInformation(handle, &mut flags) } != 0
            && flags & HANDLE_FLAG_INHERIT != 0;
        let mut duplicate: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicates a handle of this process into this process; `duplicate` is
        // writable. The duplicate is kept for the process's life as its standard handle.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                handle,
                GetCurrentProcess(),
                &mut duplicate,
                0,
                i32::from(inherit),
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            // SAFETY: reads this thread's last-error value.
            return Err(format!("DuplicateHandle failed (error {})", unsafe {
                GetLastError()
            }));
        }
        let nul = match open_nul(crt) {
            Ok(nul) => nul,
            Err(why) => {
                // SAFETY: closes the duplicate we own and have not handed out.
                unsafe { CloseHandle(duplicate) };
                return Err(why);
            }
        };
        // SAFETY: both descriptors are open in the UCRT. `_dup2` closes `fd`'s handle
        // (the duplicate keeps the file open) and makes `fd` a copy of `nul`, which may
        // also set the process's standard handle to NUL: it is set to the duplicate
        // right after. `nul` itself is then closed (its copy in `fd` stays).
        let moved = unsafe { (crt.dup2)(nul, fd) };
        // SAFETY: `nul` is our descriptor.
        unsafe { (crt.close)(nul) };
        // SAFETY: sets the process's standard handle to a valid handle we own.
        unsafe { SetStdHandle(which, duplicate) };
        if moved != 0 {
            return Err(format!("_dup2 onto descriptor {fd} failed"));
        }
        Ok(())
    })();
    // SAFETY: puts back this thread's previous handler.
    unsafe { (crt.set_thread_local_iph)(previous) };
    result
}
