//! What the kernel says about the pool's threads (Linux `/proc`): a
//! thread's id, and whether it is computing or blocked.

/// The kernel's id of the calling thread (Linux), from `/proc/thread-self`.
pub(super) fn current_tid() -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Whether thread `tid` of this process is running or waiting for a CPU
/// (state `R` in `/proc/self/task/TID/stat`), rather than blocked.
pub(super) fn runnable(tid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let after_name = stat.iter().rposition(|&b| b == b')').map_or(0, |i| i + 1);
    stat[after_name..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'R')
}

/// The CPUs this process may use.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPUs one of `workers` worker processes (a web garden) may count on:
/// its share of [`cpus`], at least one. The default for the threads that
/// can keep a CPU busy (the runtime's, and `parallel` for work that can
/// spread): more of them than CPUs only take turns, and each turn is a
/// context switch.
pub(crate) fn cpu_share(workers: usize) -> usize {
    (cpus() / workers.max(1)).max(1)
}
