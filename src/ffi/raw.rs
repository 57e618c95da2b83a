//! What the extension hands the host for an operation: byte ranges valid
//! until the operation's completion, a buffer to fill, a size-probed output
//! buffer, an open file, and the completion routine.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use windows_sys::Win32::Foundation::ERROR_INSUFFICIENT_BUFFER;
use windows_sys::Win32::System::Iis::EXTENSION_CONTROL_BLOCK;

/// A caller's byte range that must stay valid until its I/O completes.
#[derive(Clone, Copy)]
pub(crate) struct RawSlice {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the extension keeps the memory valid and unchanged until the
// operation's completion routine runs (the ISAPI async contract).
unsafe impl Send for RawSlice {}

impl RawSlice {
    /// The range at `ptr`; a NULL pointer is empty, whatever `len` says.
    ///
    /// # Safety
    /// `ptr` is NULL, or valid for `len` bytes until the operation that
    /// takes the range completes.
    pub(super) unsafe fn new(ptr: *const u8, len: usize) -> Self {
        RawSlice {
            ptr,
            len: if ptr.is_null() { 0 } else { len },
        }
    }

    /// The bytes; a NULL pointer reads as empty.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: valid for `len` bytes while the operation runs (`new`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A caller's writable buffer for an asynchronous read.
pub(crate) struct RawBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the extension keeps the buffer valid and untouched until the
// read's completion routine runs.
unsafe impl Send for RawBuf {}

impl RawBuf {
    /// The buffer at `ptr`.
    ///
    /// # Safety
    /// `ptr` is valid for writes of `len` bytes, and nothing else touches
    /// them, until the read that takes the buffer completes.
    pub(super) unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        RawBuf { ptr, len }
    }

    /// The buffer as a slice.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: valid for `len` bytes until completion (`new`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A byte range of an extension's open file (a Unix descriptor or a
/// Windows `HANDLE`); `len` 0 means to the end.
#[derive(Clone, Copy)]
pub(crate) struct FileRange {
    /// The descriptor or `HANDLE`.
    pub(crate) handle: isize,
    /// Where the range starts.
    pub(crate) offset: u64,
    /// How long it is; 0 means to the end of the file.
    pub(crate) len: u64,
}

impl FileRange {
    /// Borrows the file without taking ownership of it; `None` for an
    /// invalid handle.
    pub(crate) fn file(&self) -> Option<ManuallyDrop<std::fs::File>> {
        #[cfg(unix)]
        {
            use std::os::fd::FromRawFd;
            let fd = i32::try_from(self.handle).ok().filter(|fd| *fd >= 0)?;
            // SAFETY: the extension passes an open descriptor it keeps open
            // until the operation completes; ManuallyDrop never closes it.
            Some(ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) }))
        }
        #[cfg(windows)]
        {
            use std::os::windows::io::FromRawHandle;
            if self.handle == 0 || self.handle == -1 {
                return None;
            }
            // SAFETY: as above, for a Windows file HANDLE.
            Some(ManuallyDrop::new(unsafe {
                std::fs::File::from_raw_handle(self.handle as *mut c_void)
            }))
        }
    }
}

/// A caller's output buffer and its size, filled by the size-probing
/// protocol (`GetServerVariable`, `MAP_URL_TO_PATH`).
pub(crate) struct SizedOut<'a> {
    buf: *mut c_void,
    size: *mut u32,
    _call: PhantomData<&'a mut [u8]>,
}

impl SizedOut<'_> {
    /// The buffer `buf` of `*size` bytes.
    ///
    /// # Safety
    /// `size` is valid for reads and writes, and `buf` is NULL or valid for
    /// writes of `*size` bytes, for the lifetime `'a` (the callback).
    pub(super) unsafe fn new(buf: *mut c_void, size: *mut u32) -> Self {
        SizedOut {
            buf,
            size,
            _call: PhantomData,
        }
    }

    /// The size the caller offered.
    pub(crate) fn offered(&self) -> u32 {
        // SAFETY: `size` is valid (`new`).
        unsafe { *self.size }
    }

    /// Writes `value` and `nul` zero bytes (2 for UTF-16) into the buffer
    /// and their count into the size; a NULL or too small buffer gets
    /// `ERROR_INSUFFICIENT_BUFFER`, with the size needed written back.
    pub(crate) fn write(self, value: &[u8], nul: usize) -> Result<(), u32> {
        let needed = (value.len() + nul) as u32;
        if self.buf.is_null() || self.offered() < needed {
            // SAFETY: `size` is valid (`new`).
            unsafe { *self.size = needed };
            return Err(ERROR_INSUFFICIENT_BUFFER);
        }
        let buf = self.buf.cast::<u8>();
        // SAFETY: `buf` holds at least `needed` bytes (checked above, and
        // `new`'s contract).
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), buf, value.len());
            std::ptr::write_bytes(buf.add(value.len()), 0, nul);
            *self.size = needed;
        }
        Ok(())
    }
}

/// The extension's completion routine, as windows-sys types it once it is
/// known not to be NULL.
pub(super) type CompletionFn =
    unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32);

/// An I/O completion routine and its context, from `HSE_REQ_IO_COMPLETION`
/// (or an `HSE_TF_INFO`); the request's ECB calls it
/// ([`super::EcbCell::complete`]).
#[derive(Clone, Copy)]
pub(crate) struct Completion {
    /// The routine.
    pub(super) func: CompletionFn,
    /// Its context, an opaque pointer.
    pub(super) context: usize,
}
