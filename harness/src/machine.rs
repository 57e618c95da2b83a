//! Facts about the machine, for reports.

use std::process::Command;

use crate::procfs;

fn cmd(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Current UTC time, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown date".into())
}

/// CPU model.
pub fn cpu_model() -> String {
    procfs::cpu_model().unwrap_or_else(|| "unknown CPU".into())
}

/// Logical CPUs available to this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Total memory in MiB.
pub fn mem_mib() -> u64 {
    procfs::mem_total_kib().map(|kib| kib / 1024).unwrap_or(0)
}

/// One line: CPU, cores, memory, kernel.
pub fn summary() -> String {
    format!(
        "{}, {} logical CPUs, {} MiB RAM, Linux {}",
        cpu_model(),
        cpus(),
        mem_mib(),
        cmd("uname", &["-r"]).unwrap_or_default()
    )
}

/// `git describe` of the repository, if available.
pub fn git_rev(repo: &std::path::Path) -> String {
    cmd(
        "git",
        &[
            "-C",
            &repo.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "unknown".into())
}
