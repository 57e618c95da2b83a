//! What Linux's `/proc` says about processes and the machine: resident memory,
//! CPU time, threads and listening sockets of a server (or a whole process
//! tree), for `bench`, `servers` and the end-to-end tests. Every reader returns
//! `None`, zero or an empty answer when the process or the file is gone.

use std::collections::HashSet;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` after the command name, starting with
/// the state (field 3 of proc(5) is index 0 here).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: split after the last ')'
    let (_, after) = stat.rsplit_once(')')?;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS:`), in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether process `pid` exists.
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// VmRSS (current resident set size) of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// VmHWM (peak resident set size) of process `pid` in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// `pid` and all its descendants.
pub fn tree_pids(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // ppid is field 4
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1)?.parse().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut family = vec![pid];
    let mut i = 0;
    while i < family.len() {
        let cur = family[i];
        for &(p, pp) in &parent_of {
            if pp == cur && !family.contains(&p) {
                family.push(p);
            }
        }
        i += 1;
    }
    family
}

/// Sum of VmRSS (KiB) over `pid` and its descendants.
pub fn tree_rss_kib(pid: u32) -> u64 {
    tree_pids(pid)
        .into_iter()
        .map(|p| rss_kib(p).unwrap_or(0))
        .sum()
}

/// Open file descriptors (`/proc/<pid>/fd` entries) of `pid` and its descendants.
pub fn tree_fd_count(pid: u32) -> usize {
    tree_pids(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|rd| rd.count())
        .sum()
}

/// CPU time (user + system, in clock ticks, see [`ticks_per_sec`]) of `pid`
/// and its descendants.
pub fn tree_cpu_ticks(pid: u32) -> u64 {
    tree_pids(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            // utime and stime are fields 14 and 15
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// How many threads of process `pid` have the kernel name (`comm`) `name`.
pub fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.trim_end() == name)
                .count()
        })
        .unwrap_or(0)
}

/// The rows of `/proc/<dir>/net/tcp` and `tcp6` in the LISTEN state (`0A`),
/// each as its whitespace-separated columns.
fn listening_rows(dir: &str) -> Vec<Vec<String>> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{dir}/net/{t}")).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                // column 3 is the state
                .filter(|cols| cols.get(3).is_some_and(|s| s == "0A"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How many TCP sockets process `pid` holds in the LISTEN state, from its
/// `/proc/<pid>/fd` socket inodes matched against `/proc/<pid>/net/tcp{,6}`.
/// Unlike a connect attempt, this cannot be fooled by another process that
/// binds the same port once it is free.
pub fn listening_sockets(pid: u32) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_str()?;
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    listening_rows(&pid.to_string())
        .iter()
        // column 9 is the inode
        .filter(|cols| cols.get(9).is_some_and(|i| inodes.contains(i)))
        .count()
}

/// How many TCP sockets, of any process, listen on `port`.
pub fn listening_on_port(port: u16) -> usize {
    let local = format!(":{port:04X}");
    listening_rows("self")
        .iter()
        // column 1 is the local address (hex ip:port)
        .filter(|cols| cols.get(1).is_some_and(|a| a.ends_with(&local)))
        .count()
}

/// The CPU model (`model name` of `/proc/cpuinfo`).
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
}

/// Total memory in KiB (`MemTotal` of `/proc/meminfo`).
pub fn mem_total_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process() {
        let me = std::process::id();
        assert!(process_exists(me));
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(peak_rss_kib(me) >= rss_kib(me));
        assert!(tree_rss_kib(me) > 0);
        assert!(tree_pids(me).contains(&me));
        assert!(ticks_per_sec() > 0.0);
        assert!(mem_total_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn a_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // other tests of this process may listen too
        assert!(listening_sockets(std::process::id()) >= 1);
        assert_eq!(listening_on_port(port), 1);
        drop(l);
        assert_eq!(listening_on_port(port), 0);
    }
}
