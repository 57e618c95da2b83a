//! `--recycle-time`, `--recycle-memory` and `--hang-timeout`: each worker's
//! age, private memory and oldest request, checked once a second; a worker
//! past a limit is recycled, overlapped.

use super::Supervisor;
use crate::os::inflight;

impl Supervisor {
    /// `--recycle-time` and `--recycle-memory`, checked every second.
    pub(super) fn check_limits(&mut self) -> anyhow::Result<()> {
        let due: Vec<(u64, String)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.ready && !w.stopping && !w.succeeded)
            .filter_map(|(id, w)| {
                if let Some(t) = self.cfg.recycle_time
                    && w.started.elapsed() >= t
                {
                    return Some((*id, format!("--recycle-time {}s", t.as_secs())));
                }
                if let Some(hang) = self.cfg.hang_timeout {
                    let hung: Vec<_> = inflight::read_aged(&w.slots)
                        .into_iter()
                        .filter(|(_, age)| *age >= hang)
                        .collect();
                    if !hung.is_empty() {
                        for (url, age) in &hung {
                            tracing::error!(
                                worker = id,
                                pid = w.pid,
                                "hung request: {url} has run {}s (--hang-timeout {})",
                                age.as_secs(),
                                hang.as_secs()
                            );
                        }
                        return Some((*id, format!("hung (--hang-timeout {}s)", hang.as_secs())));
                    }
                }
                let limit = self.cfg.recycle_memory?;
                let mib = private_mib(w.pid)?;
                (mib > limit).then(|| {
                    (
                        *id,
                        format!("private memory {mib} MiB > --recycle-memory {limit}"),
                    )
                })
            })
            .collect();
        for (id, why) in due {
            self.recycle(id, &why)?;
        }
        Ok(())
    }
}

/// A process's private memory (`RssAnon`), in MiB.
fn private_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
