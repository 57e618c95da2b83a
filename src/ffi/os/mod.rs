//! Unix process plumbing for the supervisor and its workers (the process
//! model, docs/ARCHITECTURE.md): the descriptors a worker inherits, the
//! signals, and the shared-memory table of requests in flight: `unsafe`
//! code, each block with its `SAFETY` argument, behind safe functions.
//!
//! A worker finds, at fixed numbers:
//! - [`LISTENER_FD`]: the listening socket the supervisor bound;
//! - [`CONTROL_FD`]: the write end of a pipe to the supervisor (one line
//!   per message, see [`crate::server`]'s worker side);
//! - [`SLOTS_FD`]: a memfd holding its [`inflight`] table;
//! - [`GARDEN_FD`]: the memfd every worker of the pool shares, holding the
//!   connection-balancing table (`crate::server`'s `balance`).
pub(crate) mod inflight;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The worker's listening socket.
pub(crate) const LISTENER_FD: RawFd = 3;
/// The worker's pipe to the supervisor.
pub(crate) const CONTROL_FD: RawFd = 4;
/// The worker's in-flight table.
pub(crate) const SLOTS_FD: RawFd = 5;
/// The pool's connection-balancing table.
pub(crate) const GARDEN_FD: RawFd = 6;

/// The environment variable that makes a process a worker; its value is the
/// worker's number.
pub(crate) const WORKER_ENV: &str = "ISAPI_HOST_WORKER";

/// Gives the child of `cmd` the descriptors `fds` at [`LISTENER_FD`],
/// [`CONTROL_FD`], [`SLOTS_FD`] and [`GARDEN_FD`], in that order, puts it in its own
/// process group, and (on Linux) has the kernel kill it with SIGKILL if the
/// supervisor dies, so that no worker outlives it.
pub(crate) fn hand_down(cmd: &mut tokio::process::Command, fds: [RawFd; 4]) {
    let targets = [LISTENER_FD, CONTROL_FD, SLOTS_FD, GARDEN_FD];
    let pre_exec = move || -> io::Result<()> {
        // First out of the way of the targets (a source may sit on another's
        // target number), close-on-exec; then dup2 onto the targets, which
        // clears close-on-exec there.
        let mut high = [0; 4];
        for (h, fd) in high.iter_mut().zip(fds) {
            // SAFETY: fcntl on a descriptor the parent keeps open until the
            // spawn returns; async-signal-safe.
            *h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if *h < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for (h, t) in high.into_iter().zip(targets) {
            // SAFETY: both are descriptors of this (child) process; dup2 is
            // async-signal-safe.
            if unsafe { libc::dup2(h, t) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Its own process group: a terminal's Ctrl+C reaches the supervisor
        // alone, which then drains the workers (a worker that drained on
        // its own would look like one that died).
        // SAFETY: setpgid on this process; async-signal-safe.
        unsafe { libc::setpgid(0, 0) };
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl with integer arguments; async-signal-safe.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, and calls
    // only async-signal-safe functions (fcntl, dup2, setpgid, prctl); it allocates
    // nothing and takes no lock.
    unsafe {
        cmd.pre_exec(pre_exec);
    }
}

/// Whether `fd` is open in this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Takes ownership of an inherited descriptor, if it is open.
fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    if !is_open(fd) {
        return Err(io::Error::other(format!(
            "descriptor {fd} is not open: a worker is started by the supervisor only"
        )));
    }
    // SAFETY: the descriptor is open, and nothing else in this process
    // owns it: the supervisor handed it down for this one use, and it is
    // adopted once (at start-up).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a worker inherits from the supervisor.
pub(crate) struct WorkerDescriptors {
    /// The listening socket.
    pub(crate) listener: std::net::TcpListener,
    /// The pipe to the supervisor.
    pub(crate) control: File,
    /// Its in-flight table.
    pub(crate) slots: File,
    /// The pool's connection-balancing table.
    pub(crate) garden: File,
}

/// A worker's inherited descriptors.
pub(crate) fn worker_descriptors() -> io::Result<WorkerDescriptors> {
    let listener = std::net::TcpListener::from(adopt(LISTENER_FD)?);
    listener.local_addr()?; // a socket, and bound
    Ok(WorkerDescriptors {
        listener,
        control: File::from(adopt(CONTROL_FD)?),
        slots: File::from(adopt(SLOTS_FD)?),
        garden: File::from(adopt(GARDEN_FD)?),
    })
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// An anonymous shared-memory file of `len` bytes, zeroed, close-on-exec.
pub(crate) fn memfd(name: &std::ffi::CStr, len: u64) -> io::Result<File> {
    // SAFETY: name is a valid C string; the flags are memfd_create's.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len)?;
    Ok(file)
}

/// Maps `len` bytes of `file` shared, for the life of the process, as
/// 64-bit atomic words.
pub(crate) fn map_words(
    file: &File,
    len: usize,
) -> io::Result<&'static [std::sync::atomic::AtomicU64]> {
    // SAFETY: a fresh shared mapping of an open file; the kernel picks the
    // address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is page-aligned, `len` bytes long, never unmapped
    // (so 'static), and every bit pattern is a valid AtomicU64. In this
    // process it is touched only through atomics; other processes map it
    // and use atomics too (lock-free 64-bit atomics work across processes on
    // shared memory), or copy its bytes out of the file with `pread`.
    Ok(unsafe {
        std::slice::from_raw_parts(
            ptr.cast::<std::sync::atomic::AtomicU64>(),
            len / size_of::<u64>(),
        )
    })
}

/// Sends `sig` to process `pid`.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill with plain integers.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether process `pid` exists (signal 0 checks without sending).
pub(crate) fn alive(pid: u32) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// SIGTERM's number.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL's number.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;

/// A signal's name, `SIGSEGV` and the like.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(1000), "signal 1000");
    }
}
