//! Win32 errors the Win32 way: `SetLastError` and `GetLastError` on
//! Windows; on other systems the code goes through `errno`, where
//! extensions read it.

/// Sets the calling thread's last error to a Win32 code.
pub(crate) fn set_last_error(code: u32) {
    #[cfg(windows)]
    // SAFETY: SetLastError has no preconditions.
    unsafe {
        windows_sys::Win32::Foundation::SetLastError(code)
    };
    #[cfg(not(windows))]
    errno::set_errno(errno::Errno(code as i32));
}

/// The calling thread's last error.
pub(crate) fn last_error() -> i32 {
    #[cfg(windows)]
    // SAFETY: GetLastError has no preconditions.
    return unsafe { windows_sys::Win32::Foundation::GetLastError() } as i32;
    #[cfg(not(windows))]
    errno::errno().0
}
