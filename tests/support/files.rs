//! Files and directories of a test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use isapi_harness::procfs;

/// A fresh, empty directory for one test, under
/// `CARGO_TARGET_TMPDIR/test-dirs/<pid>/`. The directories of earlier test
/// processes that have exited are removed the first time this is called, so
/// runs do not accumulate files (and a failed run's files stay until the next).
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static SWEEP: OnceLock<()> = OnceLock::new();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-dirs");
    SWEEP.get_or_init(|| {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name();
                let alive = name
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(procfs::process_exists);
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base
        .join(std::process::id().to_string())
        .join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
