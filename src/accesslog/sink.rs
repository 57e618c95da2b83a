//! Where access-log lines go: standard output, one file, or a directory of
//! daily files named as IIS names them; and the thread that writes them.
//!
//! Request threads append their lines to a queue in memory; the writer
//! thread is woken by the first line and lets later ones gather for
//! [`GATHER`] (or until a batch is full) before it writes them all. Under load
//! that is one wake-up and a few `write`s per interval rather than one per
//! request (a wake-up per line cost about a third of a hello request's CPU);
//! a process that crashes can lose the lines of its last [`GATHER`].
//!
//! Every worker process of a web garden has its own writer on the same
//! files. Each batch of whole lines is one `write` on a file opened with
//! `O_APPEND`, which the kernel appends whole, so lines from several
//! processes never interleave. On a pipe (standard output), batches are cut
//! at line ends to at most `PIPE_BUF` bytes, the size a pipe writes whole.
//! A new file is made with its W3C header in place (written to a temporary
//! file, then linked to its name), so that no process can write a line
//! before the header.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use time::{Date, OffsetDateTime};

use super::format;

/// Bytes of lines waiting for the writer at most; past that, request threads wait.
const PENDING_MAX: usize = 8 * 1024 * 1024;
/// The largest batch written at once (a longer line is written alone).
const BATCH: usize = 64 * 1024;
/// How long the writer lets lines gather after the first one, unless a batch
/// fills or a flush is asked for first: the most a line waits.
pub(super) const GATHER: Duration = Duration::from_millis(10);
/// What a pipe writes whole (POSIX `PIPE_BUF`, Linux's value).
const PIPE_BUF: usize = 4096;

/// Where the lines go.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// Standard output.
    Stdout,
    /// One file, appended to.
    File(PathBuf),
    /// A directory: a file per day, `u_exYYMMDD.log` (W3C) or
    /// `u_ncYYMMDD.log` (NCSA), IIS's names.
    Daily(PathBuf),
}

impl Target {
    /// `--access-log-file`: none is standard output; an existing directory,
    /// or a path ending in a separator (made if missing), holds daily files;
    /// anything else is one file.
    pub(super) fn of(path: Option<&Path>) -> anyhow::Result<Target> {
        let Some(path) = path else {
            return Ok(Target::Stdout);
        };
        let text = path.as_os_str().to_string_lossy();
        if path.is_dir() || text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
            std::fs::create_dir_all(path).with_context(|| {
                format!("cannot make the access log directory {}", path.display())
            })?;
            return Ok(Target::Daily(path.to_path_buf()));
        }
        Ok(Target::File(path.to_path_buf()))
    }

    /// The file a line of `day` goes to (none for standard output).
    pub(super) fn path(&self, w3c: bool, day: Date) -> Option<PathBuf> {
        match self {
            Target::Stdout => None,
            Target::File(p) => Some(p.clone()),
            Target::Daily(dir) => Some(dir.join(format::daily_name(w3c, day))),
        }
    }

    /// Opens the destination once, at start-up, so that a bad path fails
    /// then; on standard output a W3C log starts with its header here.
    pub(super) fn check(&self, w3c: bool, now: OffsetDateTime) -> anyhow::Result<()> {
        match self.path(w3c, now.date()) {
            None => {
                if w3c {
                    let mut out = io::stdout().lock();
                    out.write_all(format::w3c_header(now).as_bytes())?;
                    out.flush()?;
                }
                Ok(())
            }
            Some(path) => open_file(&path, w3c, now)
                .map(drop)
                .with_context(|| format!("cannot open the access log file {}", path.display())),
        }
    }
}

/// Opens a log file for appending; a W3C file that does not exist yet is
/// made with its header already in it.
pub(super) fn open_file(path: &Path, w3c: bool, now: OffsetDateTime) -> io::Result<File> {
    if w3c && !path.exists() {
        create_with(path, format::w3c_header(now).as_bytes())?;
    }
    OpenOptions::new().append(true).create(true).open(path)
}

/// Makes `path` holding `head` unless it exists: written aside, then
/// linked to its name (which fails if another process made it first).
fn create_with(path: &Path, head: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let aside = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&aside, head)?;
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links: create it, header first.
        Err(_) => match OpenOptions::new().append(true).create_new(true).open(path) {
            Ok(mut f) => f.write_all(head),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// The lines waiting for the writer, and the flushes asked of it.
#[derive(Default)]
struct Queue {
    /// Whole lines, in batches of one day and at most [`BATCH`] bytes (a
    /// longer line alone), oldest first.
    batches: VecDeque<(Date, Vec<u8>)>,
    /// Their bytes in all.
    bytes: usize,
    /// Flushes asked for, and how many of them the writer has served.
    asked: u64,
    served: u64,
    /// The sender is gone: the writer ends once the queue is empty.
    closed: bool,
}

/// What the request threads and the writer share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits on it for lines, a flush or the end.
    to_writer: Condvar,
    /// Flushes, and senders held back by a full queue, wait on it.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still whole lines.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The request threads' end of the writer.
pub(super) struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    /// Starts the writer thread. `now` is the log's clock, for the headers
    /// of the files it makes.
    pub(super) fn open(
        target: Target,
        w3c: bool,
        now: impl Fn() -> OffsetDateTime + Send + 'static,
    ) -> anyhow::Result<Sender> {
        // Without a standard output (closed, or none for a service), the
        // lines have nowhere to go: said once, then dropped.
        let stdout = match target {
            Target::Stdout => match stdout_file() {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "no standard output: the access log is not written");
                    None
                }
            },
            _ => None,
        };
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            target,
            w3c,
            now: Box::new(now),
            stdout,
            file: None,
            failing: false,
        };
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("isapi-accesslog".into())
            .spawn(move || writer.run(&theirs))
            .context("cannot start the access log's writer thread")?;
        Ok(Sender { shared })
    }

    /// Hands a line over (newline included) for `day`'s file. The writer is
    /// woken only by the first line of an empty queue and by a full batch.
    pub(super) fn send(&self, day: Date, line: String) {
        let mut q = self.shared.lock();
        while q.bytes >= PENDING_MAX {
            q = self
                .shared
                .written
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = q.bytes;
        q.bytes += line.len();
        match q.batches.back_mut() {
            Some((d, batch)) if *d == day && batch.len() + line.len() <= BATCH => {
                batch.extend_from_slice(line.as_bytes());
            }
            _ => q.batches.push_back((day, line.into_bytes())),
        }
        let wake = before == 0 || (before < BATCH && q.bytes >= BATCH);
        drop(q);
        if wake {
            self.shared.to_writer.notify_one();
        }
    }

    /// Waits (at most `timeout`) until every line handed over is written.
    pub(super) fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        q.asked += 1;
        let ticket = q.asked;
        self.shared.to_writer.notify_one();
        while q.served < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = self
                .shared
                .written
                .wait_timeout(q, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.to_writer.notify_one();
    }
}

/// A descriptor of its own on standard output, for unbuffered writes.
fn stdout_file() -> io::Result<File> {
    #[cfg(unix)]
    let owned = std::os::fd::AsFd::as_fd(&io::stdout()).try_clone_to_owned()?;
    #[cfg(windows)]
    let owned = std::os::windows::io::AsHandle::as_handle(&io::stdout()).try_clone_to_owned()?;
    Ok(File::from(owned))
}

/// The writer thread's state.
struct Writer {
    target: Target,
    w3c: bool,
    now: Box<dyn Fn() -> OffsetDateTime + Send>,
    stdout: Option<File>,
    /// The open file and the day it is for.
    file: Option<(Date, File)>,
    /// The last write failed (and said so).
    failing: bool,
}

impl Writer {
    /// Writes the queued lines, [`GATHER`] after the first of them (at once
    /// for a full batch or a flush), until the sender is gone.
    fn run(mut self, shared: &Shared) {
        loop {
            let mut q = shared.lock();
            while q.batches.is_empty() && q.asked == q.served && !q.closed {
                q = shared
                    .to_writer
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if q.asked == q.served && q.bytes < BATCH && !q.closed {
                q = shared
                    .to_writer
                    .wait_timeout(q, GATHER)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let batches = std::mem::take(&mut q.batches);
            q.bytes = 0;
            let (asked, closed) = (q.asked, q.closed);
            drop(q);
            for (day, bytes) in &batches {
                self.write(*day, bytes);
            }
            shared.lock().served = asked;
            shared.written.notify_all();
            if closed && batches.is_empty() {
                return;
            }
        }
    }

    /// Writes whole lines of one day; a failure is reported once, until a
    /// write succeeds again.
    fn write(&mut self, day: Date, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let result = match (self.stdout.as_mut(), &self.target) {
            (Some(out), _) => write_pipe(out, bytes),
            (None, Target::Stdout) => Ok(()),
            (None, _) => self.file(day).and_then(|f| f.write_all(bytes)),
        };
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                let to = self.target.path(self.w3c, day);
                let to = to
                    .as_deref()
                    .map_or("standard output".into(), Path::to_string_lossy);
                tracing::error!(error = %e, "cannot write the access log to {to}; lines are lost until it works again");
            }
            Err(_) => {}
        }
    }

    /// The file for `day`: a new day opens a new file (daily files).
    fn file(&mut self, day: Date) -> io::Result<&mut File> {
        let current = match (&self.target, &self.file) {
            (Target::Daily(_), Some((d, _))) => *d == day,
            (_, open) => open.is_some(),
        };
        if !current {
            let path = self.target.path(self.w3c, day).expect("a file target");
            self.file = None;
            let f = open_file(&path, self.w3c, (self.now)())?;
            self.file = Some((day, f));
        }
        Ok(&mut self.file.as_mut().expect("just opened").1)
    }
}

/// Writes to a pipe in pieces of whole lines of at most `PIPE_BUF` bytes
/// (a longer line alone), which the pipe keeps whole.
fn write_pipe(out: &mut File, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut end = bytes.len().min(PIPE_BUF);
        if end < bytes.len() {
            end = match memchr::memrchr(b'\n', &bytes[..end]) {
                Some(i) => i + 1,
                None => memchr::memchr(b'\n', bytes).map_or(bytes.len(), |i| i + 1),
            };
        }
        out.write_all(&bytes[..end])?;
        bytes = &bytes[end..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("isapi-accesslog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_gets_a_file_per_day_each_with_its_header() {
        let dir = scratch("daily");
        let day1 = Date::from_calendar_date(2026, time::Month::December, 31).unwrap();
        let day2 = day1.next_day().unwrap();
        let now = OffsetDateTime::new_utc(day1, time::Time::MIDNIGHT);
        let mut w = Writer {
            target: Target::Daily(dir.clone()),
            w3c: true,
            now: Box::new(move || now),
            stdout: None,
            file: None,
            failing: false,
        };
        w.write(day1, b"a\n");
        w.write(day1, b"b\n");
        w.write(day2, b"c\n");
        let one = std::fs::read_to_string(dir.join("u_ex261231.log")).unwrap();
        let two = std::fs::read_to_string(dir.join("u_ex270101.log")).unwrap();
        assert!(one.starts_with("#Software: isapi-host "), "{one}");
        assert!(one.ends_with("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken\na\nb\n"), "{one}");
        assert!(
            two.starts_with("#Software: ") && two.ends_with("time-taken\nc\n"),
            "{two}"
        );
        // A second writer (another worker) appends, with no second header.
        let mut other = open_file(&dir.join("u_ex270101.log"), true, now).unwrap();
        other.write_all(b"d\n").unwrap();
        let two = std::fs::read_to_string(dir.join("u_ex270101.log")).unwrap();
        assert_eq!(two.matches("#Software").count(), 1);
        assert!(two.ends_with("c\nd\n"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_from_many_threads_are_all_written_whole_and_in_order_by_a_flush() {
        let dir = scratch("sender");
        let file = dir.join("access.log");
        let day = Date::from_calendar_date(2026, time::Month::December, 5).unwrap();
        let now = OffsetDateTime::new_utc(day, time::Time::MIDNIGHT);
        let sender =
            Arc::new(Sender::open(Target::File(file.clone()), false, move || now).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sender = Arc::clone(&sender);
                // 3 000 lines of 40 bytes a thread: several full batches
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        sender.send(day, format!("thread {t} line {i:05} {}\n", "x".repeat(16)));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        sender.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 12_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            assert_eq!(mine.len(), 3000);
            for (i, line) in mine.iter().enumerate() {
                assert_eq!(*line, format!("thread {t} line {i:05} {}", "x".repeat(16)));
            }
        }
        // A lone line is written soon (after the gathering time), without a flush.
        sender.send(day, "last\n".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&file)
            .unwrap()
            .ends_with("\nlast\n")
        {
            assert!(Instant::now() < deadline, "a lone line was not written");
            std::thread::sleep(GATHER);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_from_the_option() {
        let dir = scratch("target");
        assert!(matches!(Target::of(None).unwrap(), Target::Stdout));
        assert!(matches!(Target::of(Some(&dir)).unwrap(), Target::Daily(_)));
        let new_dir = format!("{}/logs/", dir.display());
        assert!(matches!(
            Target::of(Some(Path::new(&new_dir))).unwrap(),
            Target::Daily(_)
        ));
        assert!(dir.join("logs").is_dir(), "a path ending in / is made");
        let file = dir.join("access.log");
        assert!(matches!(Target::of(Some(&file)).unwrap(), Target::File(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
